"""Unit tests for filter_plugins/nexus_mirror.py (the nexus_mirror role's settings rules)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nexus_mirror_filters", ROOT / "filter_plugins" / "nexus_mirror.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load()
FILTERS = plugin.FilterModule().filters()
errors_of = FILTERS["nexus_mirror_settings_errors"]

MIRROR = "http://127.0.0.1:18080/repository/"
APT = {"uris": f"{MIRROR}apt-debian/", "suites": "bookworm", "components": "main", "trusted": True}
GOOD = {"pypi_index_url": f"{MIRROR}pypi-proxy/simple/", "pypi_extra_index_urls": [], "conda_enabled": True,
        "conda_url": f"{MIRROR}conda-proxy/", "conda_channels": ["conda-forge"], "conda_default_channels": ["main"],
        "apt_repositories": [APT], "apt_exclusive": True, "yum_repositories": [], "username": "", "password": "",
        "ca_cert": ""}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _errors(os_family: str = "Debian", **changes: object) -> list[str]:
    return errors_of({**GOOD, **changes}, "node1", os_family)


def test_good_settings_pass() -> None:
    assert _errors() == []


# The cases the molecule scenario ran one by one before, and more.
@pytest.mark.parametrize(("changes", "variable"), [
    ({"pypi_index_url": "not a url"}, "nexus_mirror_pypi_index_url"),
    ({"pypi_index_url": "ftp://mirror/simple/"}, "nexus_mirror_pypi_index_url"),
    ({"pypi_index_url": ""}, "nexus_mirror_pypi_index_url"),
    ({"pypi_extra_index_urls": ["nope"]}, "nexus_mirror_pypi_extra_index_urls"),
    ({"pypi_extra_index_urls": [f"{MIRROR}a/", "http:/x"]}, "nexus_mirror_pypi_extra_index_urls"),
    ({"conda_url": ""}, "nexus_mirror_conda_url"),
    ({"conda_channels": []}, "nexus_mirror_conda_channels"),
    ({"conda_channels": ["defaults"]}, "without 'defaults'"),
    ({"conda_default_channels": []}, "nexus_mirror_conda_default_channels"),
    ({"apt_repositories": [{"uris": "bad", "suites": "x", "components": "y"}]}, "nexus_mirror_apt_repositories"),
    ({"apt_repositories": [{**APT, "suites": []}]}, "nexus_mirror_apt_repositories"),
    ({"apt_repositories": [{**APT, "components": ""}]}, "nexus_mirror_apt_repositories"),
    ({"apt_repositories": ["deb http://x bookworm main"]}, "nexus_mirror_apt_repositories"),
    ({"apt_repositories": [{**APT, "uris": [f"{MIRROR}a/", "file:///srv"]}]}, "nexus_mirror_apt_repositories"),
    ({"apt_repositories": []}, "nexus_mirror_apt_exclusive"),
    ({"username": "someone"}, "nexus_mirror_password"),
    ({"password": "pw"}, "nexus_mirror_username"),
    ({"username": "some one", "password": "pw"}, "whitespace"),
    ({"username": "someone", "password": "p w"}, "whitespace"),
    ({"ca_cert": "/etc/ssl/ca.pem"}, "nexus_mirror_ca_cert must be PEM content"),
])
def test_bad_setting_is_named_with_the_host(changes: dict, variable: str) -> None:
    errors = _errors(**changes)
    assert len(errors) == 1, errors
    assert variable in errors[0] and "host node1" in errors[0], errors[0]


@pytest.mark.parametrize("changes", [
    {"conda_enabled": False, "conda_url": "", "conda_channels": []},
    {"apt_exclusive": False, "apt_repositories": []},
    {"apt_repositories": [{**APT, "uris": [f"{MIRROR}a/", f"{MIRROR}b/"], "suites": ["bookworm", "bookworm-updates"]}]},
    {"pypi_index_url": "https://nexus.example.internal:8443/repository/pypi-proxy/simple/"},
    {"pypi_extra_index_urls": ["http://localhost:18080/repository/pypi-proxy/simple/"]},
    {"username": "labuser", "password": "s3cr/t@pw%x"},
    {"ca_cert": PEM},
])
def test_good_setting_passes(changes: dict) -> None:
    assert _errors(**changes) == []


def test_apt_rules_only_on_debian_and_yum_rules_only_on_redhat() -> None:
    assert _errors("RedHat", apt_repositories=[{"uris": "bad"}]) == []
    assert _errors("Debian", yum_repositories=[{"name": ""}]) == []
    errors = _errors("RedHat", yum_repositories=[{"name": "mirror", "baseurl": f"{MIRROR}rocky/"}, {"name": "x"},
                                                 {"baseurl": f"{MIRROR}a/"}])
    assert len(errors) == 1 and "nexus_mirror_yum_repositories" in errors[0] and '"name": "x"' in errors[0]


@pytest.mark.parametrize(("username", "password"), [("s3cret-user", ""), ("", "s3cret-pass"), ("u s3cret", "p"),
                                                    ("u", "s3cret pass")])
def test_credentials_never_shown(username: str, password: str) -> None:
    errors = _errors(username=username, password=password)
    assert errors and not any("s3cret" in e for e in errors)


def test_every_broken_rule_is_reported() -> None:
    assert len(_errors(pypi_index_url="x", conda_url="", apt_repositories=[], username="u")) == 4


@pytest.mark.parametrize("settings", [None, [], {"pypi_index_url": ""}])
def test_settings_must_be_complete(settings: object) -> None:
    with pytest.raises(AnsibleFilterError, match="nexus_mirror_settings_errors"):
        errors_of(settings, "node1", "Debian")


def test_preflight_passes_every_setting() -> None:
    tasks = yaml.safe_load((ROOT / "roles" / "nexus_mirror" / "tasks" / "preflight.yml").read_text())
    check = next(t for t in tasks if t["name"] == "Check the nexus_mirror settings")
    settings = check["vars"]["_nexus_mirror_settings"]
    assert sorted(settings) == sorted(GOOD)
    assert all(value.startswith(f"{{{{ nexus_mirror_{key} ") for key, value in settings.items())


def test_undefined_input_fails_as_undefined() -> None:
    """A variable not set yet (as ansible-lint templates it) is undefined, not a bad value."""
    from jinja2 import Undefined
    from jinja2.exceptions import UndefinedError
    with pytest.raises(UndefinedError):
        errors_of(Undefined(), 'node1', 'Debian')
