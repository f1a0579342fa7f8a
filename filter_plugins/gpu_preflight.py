"""The gpu_preflight role's validation rules, as filters returning lists of error messages.

This file holds two filters. ansible-doc reads one documentation block per plugin file, so the
DOCUMENTATION, EXAMPLES and RETURN blocks below are YAML mappings keyed by filter name
(tests/unit/plugins/filter/test_gpu_preflight.py checks that every filter has all three).
The role asserts that each list is empty and shows the messages otherwise; every message names
the host and the setting.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
gpu_preflight_input_errors:
  name: gpu_preflight_input_errors
  short_description: What is wrong with the gpu_preflight settings of one host
  description:
    - Checks that the driver and CUDA minimums are dotted numeric versions, the GPU count minimum a
      whole number and the expected model a lower-case family token (or empty), and that the host is
      in at most one of the GPU-family groups.
  positional: _input
  options:
    _input:
      description: "The settings: a mapping with the role's variables without the C(gpu_preflight_) prefix
        (C(min_driver_version), C(min_cuda_version), C(min_gpu_count), C(expected_model), C(exclusive_groups))."
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
    groups:
      description: The host's C(group_names).
      type: list
      required: true
gpu_preflight_gpu_errors:
  name: gpu_preflight_gpu_errors
  short_description: How the GPUs nvidia-smi reported fall short of the gpu_preflight settings
  description:
    - Compares the driver and CUDA versions (as versions, so C(12.2) is older than C(12.10)), the
      number of GPUs and their family with the settings and the family the host claims.
  positional: _input
  options:
    _input:
      description: "The settings, as for C(gpu_preflight_input_errors)."
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
    groups:
      description: The host's C(group_names).
      type: list
      required: true
    gpus:
      description: The GPUs, as C(nvidia_smi_gpus) returns them (C(name) is used).
      type: list
      required: true
    header:
      description: C(nvidia_smi_header)'s result (C(driver_version), C(cuda_version)).
      type: dict
      required: true
    families:
      description: The GPUs' families (C(gpu_model_family) of each name); must be exactly the claimed one.
      type: list
      required: true
"""

EXAMPLES = r"""
gpu_preflight_input_errors: |
  # ['host gpu1: gpu_preflight_min_cuda_version must be a dotted numeric version such as "11.7", got "eleven"']
  {{ {'min_driver_version': '525', 'min_cuda_version': 'eleven', 'min_gpu_count': 1,
      'expected_model': '', 'exclusive_groups': ['l40', 'a100']}
     | gpu_preflight_input_errors('gpu1', ['l40']) }}
gpu_preflight_gpu_errors: |
  # ['host gpu1 has 1× NVIDIA L40, fewer than gpu_preflight_min_gpu_count 2']
  {{ settings | gpu_preflight_gpu_errors('gpu1', ['l40'], gpus=[{'name': 'NVIDIA L40'}],
                                         header={'driver_version': '535.129.03', 'cuda_version': '12.2'},
                                         families=['l40']) }}
"""

RETURN = r"""
gpu_preflight_input_errors:
  _value:
    description: One message per broken rule, each naming the host and the setting; empty when all hold.
    type: list
    elements: str
gpu_preflight_gpu_errors:
  _value:
    description: One message per failed check, each naming the host and the setting; empty when all hold.
    type: list
    elements: str
"""

_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODEL = re.compile(r"^[a-z0-9]*$")



def _defined(value: Any, filter_name: str) -> None:
    """An undefined input (a variable not set yet) fails as undefined, not as a bad value."""
    if isinstance(value, Undefined):
        raise UndefinedError(f"{filter_name}: its input is undefined")

def _version(value: Any) -> tuple[int, ...]:
    """A dotted version as a tuple of ints; non-numeric parts (not expected) count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in str(value).split("."))


def _older(found: Any, minimum: Any) -> bool:
    a, b = _version(found), _version(minimum)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) < b + (0,) * (width - len(b))


def _settings(settings: Any, filter_name: str) -> dict[str, Any]:
    _defined(settings, filter_name)
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"{filter_name}: expected a mapping of settings, got {type(settings).__name__}")
    missing = {"min_driver_version", "min_cuda_version", "min_gpu_count", "expected_model", "exclusive_groups"} - set(settings)
    if missing:
        raise AnsibleFilterError(f"{filter_name}: settings lack {', '.join(sorted(missing))}")
    return settings


def gpu_preflight_input_errors(settings: dict[str, Any], host: str, groups: list[str]) -> list[str]:
    """Broken rules of the settings alone (no GPU needed)."""
    s = _settings(settings, "gpu_preflight_input_errors")
    errors = []
    for name, example in (("min_driver_version", "525.60.13"), ("min_cuda_version", "11.7")):
        if not _VERSION.match(str(s[name])):
            errors.append(f'host {host}: gpu_preflight_{name} must be a dotted numeric version such as "{example}", got "{s[name]}"')
    count = s["min_gpu_count"]
    if isinstance(count, bool) or not re.match(r"^[0-9]+$", str(count)):
        errors.append(f'host {host}: gpu_preflight_min_gpu_count must be a whole number ≥ 0, got "{count}"')
    if not _MODEL.match(str(s["expected_model"])):
        errors.append(f'host {host}: gpu_preflight_expected_model must be a lower-case GPU family such as l40 or a100,'
                      f' or "", got "{s["expected_model"]}"')
    exclusive = sorted(set(groups) & set(s["exclusive_groups"]))
    if len(exclusive) > 1:
        errors.append(f"host {host} is in groups {' and '.join(exclusive)} but a host can carry only one GPU family"
                      f" (gpu_preflight_exclusive_groups: {', '.join(s['exclusive_groups'])})")
    return errors


def _summary(gpus: list[dict[str, Any]]) -> str:
    names = [str(gpu["name"]) for gpu in gpus]
    return ", ".join(f"{names.count(n)}× {n}" for n in dict.fromkeys(names)) or "no GPUs"


def gpu_preflight_gpu_errors(settings: dict[str, Any], host: str, groups: list[str], gpus: list[dict[str, Any]],
                             header: dict[str, Any], families: list[str]) -> list[str]:
    """Failed checks of the GPUs found against the settings."""
    s = _settings(settings, "gpu_preflight_gpu_errors")
    driver, cuda = header.get("driver_version", ""), header.get("cuda_version", "")
    errors = []
    if _older(driver, s["min_driver_version"]):
        errors.append(f"host {host} has NVIDIA driver {driver}, older than gpu_preflight_min_driver_version {s['min_driver_version']}")
    if _older(cuda, s["min_cuda_version"]):
        errors.append(f"host {host} supports CUDA {cuda} (driver {driver}), older than gpu_preflight_min_cuda_version"
                      f" {s['min_cuda_version']}")
    if len(gpus) < int(s["min_gpu_count"]):
        errors.append(f"host {host} has {_summary(gpus)}, fewer than gpu_preflight_min_gpu_count {s['min_gpu_count']}")
    claim = s["expected_model"] or next((g for g in groups if g in s["exclusive_groups"]), "")
    if claim and sorted(set(families)) != [claim]:
        if claim in groups:
            claimed = f"is in group {claim}"
        else:
            claimed = (f"is claimed for group {claim} by gpu_preflight_expected_model"
                       f" (its groups: {', '.join(groups) or 'none'})")
        errors.append(f"host {host} {claimed} but its GPUs are {_summary(gpus)}")
    return errors


class FilterModule:
    """gpu_preflight validation filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "gpu_preflight_input_errors": gpu_preflight_input_errors,
            "gpu_preflight_gpu_errors": gpu_preflight_gpu_errors,
        }
