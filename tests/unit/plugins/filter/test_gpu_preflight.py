"""Unit tests for filter_plugins/gpu_preflight.py (the gpu_preflight role's validation rules).

The recordings of molecule/fixtures/gpu go through the nvidia_smi filters first, as in the role.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_filters", ROOT / "filter_plugins" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load("gpu_preflight")
smi = _load("nvidia_smi").FilterModule().filters()
FILTERS = plugin.FilterModule().filters()
input_errors = FILTERS["gpu_preflight_input_errors"]
gpu_errors = FILTERS["gpu_preflight_gpu_errors"]

DEFAULTS = {"min_driver_version": "525.60.13", "min_cuda_version": "11.7", "min_gpu_count": 1,
            "expected_model": "", "exclusive_groups": ["l40", "a100"]}


def _recording(profile: str) -> dict:
    """gpus, header and families of a recording, as the role computes them."""
    table = (RECORDINGS / profile / "nvidia-smi.txt").read_text(encoding="utf-8")
    gpus = smi["nvidia_smi_gpus"]((RECORDINGS / profile / "query-gpu.csv").read_text(encoding="utf-8"))
    return {"gpus": gpus, "header": smi["nvidia_smi_header"](table),
            "families": [smi["gpu_model_family"](gpu["name"]) for gpu in gpus]}


def _gpu_errors(profile: str, groups: list[str], **settings: object) -> list[str]:
    return gpu_errors({**DEFAULTS, **settings}, "gpu1", groups, **_recording(profile))


# --- Settings ------------------------------------------------------------------------------------

def test_defaults_pass() -> None:
    assert input_errors(DEFAULTS, "gpu1", ["l40"]) == []


@pytest.mark.parametrize(("name", "value", "message"), [
    ("min_cuda_version", "eleven",
     'host gpu1: gpu_preflight_min_cuda_version must be a dotted numeric version such as "11.7", got "eleven"'),
    ("min_cuda_version", "11.", 'host gpu1: gpu_preflight_min_cuda_version must be a dotted numeric version'),
    ("min_driver_version", "v525",
     'host gpu1: gpu_preflight_min_driver_version must be a dotted numeric version such as "525.60.13", got "v525"'),
    ("min_gpu_count", "two", 'host gpu1: gpu_preflight_min_gpu_count must be a whole number ≥ 0, got "two"'),
    ("min_gpu_count", -1, 'host gpu1: gpu_preflight_min_gpu_count must be a whole number ≥ 0, got "-1"'),
    ("min_gpu_count", True, 'host gpu1: gpu_preflight_min_gpu_count must be a whole number ≥ 0, got "True"'),
    ("expected_model", "L40", 'host gpu1: gpu_preflight_expected_model must be a lower-case GPU family'),
    ("expected_model", "a100 ", 'got "a100 "'),
])
def test_bad_setting_is_named_with_the_host(name: str, value: object, message: str) -> None:
    errors = input_errors({**DEFAULTS, name: value}, "gpu1", ["l40"])
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize(("name", "value"), [("min_driver_version", 525), ("min_cuda_version", "12.10"),
                                              ("min_gpu_count", "0"), ("min_gpu_count", 8), ("expected_model", "h100")])
def test_good_setting_passes(name: str, value: object) -> None:
    assert input_errors({**DEFAULTS, name: value}, "gpu1", []) == []


def test_host_in_two_gpu_family_groups() -> None:
    errors = input_errors(DEFAULTS, "gpu1", ["a100", "gpus", "l40"])
    assert errors == ["host gpu1 is in groups a100 and l40 but a host can carry only one GPU family"
                      " (gpu_preflight_exclusive_groups: l40, a100)"]


def test_every_broken_rule_is_reported() -> None:
    settings = {**DEFAULTS, "min_cuda_version": "x", "min_driver_version": "y", "min_gpu_count": "z"}
    assert len(input_errors(settings, "gpu1", ["a100", "l40"])) == 4


@pytest.mark.parametrize("settings", [None, [], {"min_cuda_version": "11.7"}])
def test_settings_must_be_complete(settings: object) -> None:
    with pytest.raises(AnsibleFilterError, match="gpu_preflight_input_errors"):
        input_errors(settings, "gpu1", [])


# --- GPUs against the settings (recordings) ---------------------------------------------------------

@pytest.mark.parametrize(("profile", "groups"), [("l40x1", ["l40"]), ("a100x8", ["a100"]), ("a100x1", [])])
def test_recordings_pass_with_defaults(profile: str, groups: list[str]) -> None:
    assert _gpu_errors(profile, groups) == []


def test_driver_minimum_above_host() -> None:
    assert _gpu_errors("a100x8", ["a100"], min_driver_version="545.23.08") == [
        "host gpu1 has NVIDIA driver 535.129.03, older than gpu_preflight_min_driver_version 545.23.08"]


def test_cuda_minimum_compared_as_version() -> None:
    # As strings "12.2" < "12.10" would pass; as versions 12.2 < 12.10 fails.
    assert _gpu_errors("a100x8", ["a100"], min_cuda_version="12.10") == [
        "host gpu1 supports CUDA 12.2 (driver 535.129.03), older than gpu_preflight_min_cuda_version 12.10"]
    assert _gpu_errors("a100x8", ["a100"], min_cuda_version="12.2.0") == []
    assert _gpu_errors("a100x8", ["a100"], min_driver_version="535.129") == []


def test_gpu_count_minimum() -> None:
    assert _gpu_errors("a100x8", ["a100"], min_gpu_count=16) == [
        "host gpu1 has 8× NVIDIA A100-SXM4-80GB, fewer than gpu_preflight_min_gpu_count 16"]
    assert _gpu_errors("a100x8", ["a100"], min_gpu_count="8") == []


def test_expected_model_other_than_the_gpus() -> None:
    assert _gpu_errors("a100x8", ["a100"], expected_model="l40") == [
        "host gpu1 is claimed for group l40 by gpu_preflight_expected_model (its groups: a100)"
        " but its GPUs are 8× NVIDIA A100-SXM4-80GB"]
    assert _gpu_errors("a100x8", [], expected_model="l40")[0].endswith(
        "(its groups: none) but its GPUs are 8× NVIDIA A100-SXM4-80GB")


def test_group_other_than_the_gpus() -> None:
    assert _gpu_errors("a100x8", ["gpus", "l40"]) == [
        "host gpu1 is in group l40 but its GPUs are 8× NVIDIA A100-SXM4-80GB"]


def test_expected_model_overrides_the_group() -> None:
    assert _gpu_errors("a100x8", ["l40"], expected_model="a100") == []


def test_no_claim_accepts_any_model() -> None:
    assert _gpu_errors("l40x1", ["gpus"]) == []


def test_mixed_host_fails_its_claim() -> None:
    mixed = {"gpus": [{"name": "NVIDIA L40"}, {"name": "NVIDIA A100-SXM4-80GB"}],
             "header": {"driver_version": "535.129.03", "cuda_version": "12.2"}, "families": ["l40", "a100"]}
    assert gpu_errors(DEFAULTS, "gpu1", ["l40"], **mixed) == [
        "host gpu1 is in group l40 but its GPUs are 1× NVIDIA L40, 1× NVIDIA A100-SXM4-80GB"]


def test_old_driver_recording() -> None:
    assert _gpu_errors("old-driver", ["a100"]) == [
        "host gpu1 has NVIDIA driver 470.223.02, older than gpu_preflight_min_driver_version 525.60.13",
        "host gpu1 supports CUDA 11.4 (driver 470.223.02), older than gpu_preflight_min_cuda_version 11.7"]


def test_old_cuda_with_driver_minimum_lowered() -> None:
    assert _gpu_errors("old-driver", ["a100"], min_driver_version="470") == [
        "host gpu1 supports CUDA 11.4 (driver 470.223.02), older than gpu_preflight_min_cuda_version 11.7"]


def test_no_gpus_fail_count_and_claim() -> None:
    errors = gpu_errors(DEFAULTS, "gpu1", ["l40"], gpus=[], header={"driver_version": "535.129.03", "cuda_version": "12.2"},
                        families=[])
    assert errors == ["host gpu1 has no GPUs, fewer than gpu_preflight_min_gpu_count 1",
                      "host gpu1 is in group l40 but its GPUs are no GPUs"]


# --- Documentation ------------------------------------------------------------------------------


def test_undefined_input_fails_as_undefined() -> None:
    """A variable not set yet (as ansible-lint templates it) is undefined, not a bad value."""
    from jinja2 import Undefined
    from jinja2.exceptions import UndefinedError
    with pytest.raises(UndefinedError):
        input_errors(Undefined(), 'gpu1', [])
