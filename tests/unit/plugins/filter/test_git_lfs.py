"""Unit tests for filter_plugins/git_lfs.py (the git_lfs role's settings rules)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("git_lfs_filters", ROOT / "filter_plugins" / "git_lfs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load()
FILTERS = plugin.FilterModule().filters()
errors_of = FILTERS["git_lfs_settings_errors"]
DEB = "http://127.0.0.1:18080/repository/apt-debian/pool/main/g/git-lfs/git-lfs_3.3.0-1+b5_amd64.deb"
GOOD = {"min_version": "3.0.0", "install_method": "distro", "package_url": "", "package_sha256": "",
        "concurrent_transfers": 8, "activity_timeout": None}
MIRROR = {**GOOD, "install_method": "mirror", "package_url": DEB, "package_sha256": "a" * 64}


def test_good_settings_pass() -> None:
    assert errors_of(GOOD, "node1", "deb") == []
    assert errors_of(MIRROR, "node1", "deb") == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"min_version": "three"}, "git_lfs_min_version must be a version such as \"3.0.0\"; got 'three' for host node1."),
    ({"min_version": "3.0.0.0.1"}, "got '3.0.0.0.1'"),
    ({"min_version": "v3"}, "got 'v3'"),
    ({"min_version": 3}, "git_lfs_min_version must be a version"),
    ({"install_method": "mirror"}, "git_lfs_install_method \"mirror\" needs git_lfs_package_url, the http(s) URL of a .deb"),
    ({**MIRROR, "package_url": DEB.replace(".deb", ".rpm")}, "(got '" + DEB.replace(".deb", ".rpm") + "')"),
    ({**MIRROR, "package_url": "ftp://mirror/git-lfs.deb"}, "git_lfs_package_url"),
    ({**MIRROR, "package_sha256": "abc"}, "git_lfs_package_sha256, its 64-hex-digit SHA-256 (got 'abc')"),
    ({"concurrent_transfers": 0}, "git_lfs_concurrent_transfers must be 1 or more (got 0)"),
    ({"concurrent_transfers": "many"}, "(got many)"),
    ({"activity_timeout": -1}, "git_lfs_activity_timeout null or 0 or more seconds (got -1)"),
])
def test_bad_setting_is_named_with_the_host(changes: dict, expected: str) -> None:
    errors = errors_of({**GOOD, **changes}, "node1", "deb")
    assert len(errors) == 1, errors
    assert expected in errors[0] and "host node1" in errors[0], errors[0]


@pytest.mark.parametrize("changes", [{"min_version": "3"}, {"min_version": "3.4.1.2"}, {"concurrent_transfers": "1"},
                                     {"activity_timeout": 0}, {"activity_timeout": "120"},
                                     {"package_url": "not checked for distro"}])
def test_good_setting_passes(changes: dict) -> None:
    assert errors_of({**GOOD, **changes}, "node1", "deb") == []


def test_package_format_follows_the_host() -> None:
    rpm = {**MIRROR, "package_url": DEB.replace(".deb", ".rpm")}
    assert errors_of(rpm, "node1", "rpm") == []
    assert ".rpm package" in errors_of(MIRROR, "node1", "rpm")[0]


def test_install_method_choices_are_in_the_argument_spec() -> None:
    """git_lfs_install_method "tarball" is refused by the argument spec (choices), before any task."""
    spec = yaml.safe_load((ROOT / "roles" / "git_lfs" / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["git_lfs_install_method"]["choices"] == ["distro", "mirror"]


@pytest.mark.parametrize("settings", [None, {"min_version": "3"}])
def test_settings_must_be_complete(settings: object) -> None:
    with pytest.raises(AnsibleFilterError, match="git_lfs_settings_errors"):
        errors_of(settings, "node1", "deb")


def test_undefined_input_fails_as_undefined() -> None:
    """A variable not set yet (as ansible-lint templates it) is undefined, not a bad value."""
    from jinja2 import Undefined
    from jinja2.exceptions import UndefinedError
    with pytest.raises(UndefinedError):
        errors_of(Undefined(), 'node1', 'deb')
