"""Unit tests for filter_plugins/conda_settings.py (the conda role's settings rules)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conda_settings_filters", ROOT / "filter_plugins" / "conda_settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load()
FILTERS = plugin.FilterModule().filters()
errors_of = FILTERS["conda_settings_errors"]

MIRROR = "http://127.0.0.1:18080/repository/raw-hosted/fixtures/conda/"
GOOD = {"installer_url": f"{MIRROR}Miniconda3-double-23.11.0-Linux-x86_64.sh",
        "installer_sha256": "e5ca38d132c70dd06a327fab67ac3ccc1cda2a59b59f81cfeecade1fe310f0d3",
        "version": "23.11.0", "prefix": "/opt/conda", "download_dir": "/var/cache/chatfleet/conda",
        "condarc_path": "/etc/conda/.condarc", "profile_script": "", "download_retries": 5, "download_delay": 5}


def test_good_settings_pass() -> None:
    assert errors_of(GOOD, "node1") == []


# The cases the molecule scenario ran one by one before (each a converge that had to stop).
@pytest.mark.parametrize(("name", "value", "expected"), [
    ("installer_url", "", "conda_installer_url must be the http(s) URL of a Linux .sh conda installer"),
    ("installer_url", "ftp://mirror/conda/Miniconda3.sh", "conda_installer_url must be the http(s) URL"),
    ("installer_url", MIRROR, "conda_installer_url must be the http(s) URL"),
    ("installer_url", "https://nexus/conda/Miniconda3 latest.sh", "conda_installer_url must be the http(s) URL"),
    ("installer_url", None, "got 'None'"),
    ("installer_sha256", "", "conda_installer_sha256 must be the SHA-256 of the installer"),
    ("installer_sha256", "abc123", "conda_installer_sha256 must be the SHA-256 of the installer"),
    ("installer_sha256", "g" * 64, "got '" + "g" * 64 + "'"),
    ("version", "latest", "conda_version must be the conda version the installer brings"),
    ("version", "23", "got '23'"),
    ("version", 23.11, "got '23.11'"),
    ("prefix", "opt/conda", "conda_prefix must be an absolute path without spaces"),
    ("prefix", "/opt/my conda", "got '/opt/my conda'"),
    ("prefix", "/", "conda_prefix must be an absolute path"),
    ("prefix", "/opt/conda/", "got '/opt/conda/'"),
    ("download_dir", "cache", "conda_download_dir must be an absolute path"),
    ("condarc_path", "/etc/conda/", "conda_condarc_path must be an absolute path"),
    ("profile_script", "conda.sh", "conda_profile_script must be \"\" or an absolute file path; got 'conda.sh'"),
    ("download_retries", -1, "conda_download_retries must be a whole number of 0 or more; got -1"),
    ("download_retries", "five", "got five"),
    ("download_retries", True, "got True"),
    ("download_delay", -5, "conda_download_delay must be a whole number of 0 or more; got -5"),
])
def test_bad_setting_is_named_with_the_host(name: str, value: object, expected: str) -> None:
    errors = errors_of({**GOOD, name: value}, "node1")
    assert len(errors) == 1, errors
    assert expected in errors[0] and errors[0].endswith("for host node1."), errors[0]


@pytest.mark.parametrize(("name", "value"), [
    ("installer_url", "https://nexus.example.internal/repository/raw-hosted/conda/Miniconda3-py310_23.11.0-2-Linux-x86_64.sh"),
    ("installer_sha256", "E5CA38D132C70DD06A327FAB67AC3CCC1CDA2A59B59F81CFEECADE1FE310F0D3"),
    ("version", "4.12"), ("version", "23.11.0.1"), ("download_dir", "/"), ("profile_script", "/etc/profile.d/conda.sh"),
    ("download_retries", 0), ("download_retries", "3"), ("download_delay", 0),
])
def test_good_setting_passes(name: str, value: object) -> None:
    assert errors_of({**GOOD, name: value}, "node1") == []


def test_every_broken_rule_is_reported() -> None:
    bad = {**GOOD, "installer_url": "", "installer_sha256": "", "version": "x", "prefix": "/"}
    assert len(errors_of(bad, "node1")) == 4


@pytest.mark.parametrize("settings", [None, [], {"installer_url": ""}])
def test_settings_must_be_complete(settings: object) -> None:
    with pytest.raises(AnsibleFilterError, match="conda_settings_errors"):
        errors_of(settings, "node1")


def test_preflight_passes_every_setting() -> None:
    """The role's preflight hands the filter every setting it checks (a missing one raises)."""
    tasks = yaml.safe_load((ROOT / "roles" / "conda" / "tasks" / "preflight.yml").read_text())
    settings = tasks[0]["vars"]["_conda_settings"]
    assert sorted(settings) == sorted(GOOD)
    assert all(value == f"{{{{ conda_{key} }}}}" for key, value in settings.items())


def test_undefined_input_fails_as_undefined() -> None:
    """A variable not set yet (as ansible-lint templates it) is undefined, not a bad value."""
    from jinja2 import Undefined
    from jinja2.exceptions import UndefinedError
    with pytest.raises(UndefinedError):
        errors_of(Undefined(), 'node1')
