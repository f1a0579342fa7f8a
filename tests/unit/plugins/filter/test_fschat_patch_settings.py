"""Unit tests for filter_plugins/fschat_patch_settings.py (the fschat_patch role's settings rules)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fschat_patch_settings_filters",
                                                  ROOT / "filter_plugins" / "fschat_patch_settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load()
FILTERS = plugin.FilterModule().filters()
errors_of = FILTERS["fschat_patch_settings_errors"]
GOOD = {"env_path": "/opt/chatchat/envs/0.2.8", "fixed_since": "0.2.35"}


@pytest.mark.parametrize("changes", [{}, {"env_path": "/opt/chatchat/envs/0.2.8/"}, {"fixed_since": "1"},
                                     {"fixed_since": "0.2.35.1"}])
def test_good_settings_pass(changes: dict) -> None:
    assert errors_of({**GOOD, **changes}, "node1") == []


@pytest.mark.parametrize(("changes", "variable", "got"), [
    ({"env_path": ""}, "fschat_patch_env_path must be the absolute prefix of the Python environment", "''"),
    ({"env_path": "opt/chatchat"}, "fschat_patch_env_path", "'opt/chatchat'"),
    ({"env_path": "/opt/my env"}, "fschat_patch_env_path", "'/opt/my env'"),
    ({"env_path": None}, "fschat_patch_env_path", "'None'"),
    ({"fixed_since": "latest"}, 'fschat_patch_fixed_since must be a version string such as "0.2.35"', "'latest'"),
    ({"fixed_since": "0.2.35rc1"}, "fschat_patch_fixed_since", "'0.2.35rc1'"),
    ({"fixed_since": 0.2}, "fschat_patch_fixed_since", "'0.2'"),
])
def test_bad_setting_is_named_with_the_host(changes: dict, variable: str, got: str) -> None:
    errors = errors_of({**GOOD, **changes}, "node1")
    assert len(errors) == 1, errors
    assert errors[0].startswith(variable), errors[0]
    assert errors[0].endswith(f"got {got} for host node1."), errors[0]


def test_both_broken_rules_are_reported() -> None:
    assert len(errors_of({"env_path": "", "fixed_since": ""}, "node1")) == 2


@pytest.mark.parametrize("settings", [None, {"env_path": "/x"}])
def test_settings_must_be_complete(settings: object) -> None:
    with pytest.raises(AnsibleFilterError, match="fschat_patch_settings_errors"):
        errors_of(settings, "node1")


def test_undefined_input_fails_as_undefined() -> None:
    """A variable not set yet (as ansible-lint templates it) is undefined, not a bad value."""
    from jinja2 import Undefined
    from jinja2.exceptions import UndefinedError
    with pytest.raises(UndefinedError):
        errors_of(Undefined(), 'node1')
