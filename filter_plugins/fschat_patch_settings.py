"""The fschat_patch role's settings rules, as a filter returning the list of error messages.

The role's settings check (tasks/settings.yml, shared by the preflight and inspect entry points)
asserts that the list is empty and shows the messages otherwise; every message names the setting,
what it got and the host. Unit tests: tests/unit/plugins/filter/test_fschat_patch_settings.py.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
fschat_patch_settings_errors:
  name: fschat_patch_settings_errors
  short_description: What is wrong with the fschat_patch settings of one host
  description:
    - C(env_path) must be an absolute path without spaces (the prefix of the Python environment that
      holds fschat); C(fixed_since) a dotted numeric version string such as C(0.2.35).
    - The settings are the role's variables without the C(fschat_patch_) prefix.
  positional: _input
  options:
    _input:
      description: The settings (C(env_path), C(fixed_since)).
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
"""

EXAMPLES = r"""
fschat_patch_settings_errors: |
  # ["fschat_patch_env_path must be the absolute prefix ...; got '' for host node1."]
  {{ {'env_path': '', 'fixed_since': '0.2.35'} | fschat_patch_settings_errors('node1') }}
"""

RETURN = r"""
fschat_patch_settings_errors:
  _value:
    description: One message per broken rule, each naming the setting and the host; empty when all hold.
    type: list
    elements: str
"""

_PATH = re.compile(r"^/\S*$")
_VERSION = re.compile(r"^[0-9]+([.][0-9]+)*$")



def _defined(value: Any, filter_name: str) -> None:
    """An undefined input (a variable not set yet) fails as undefined, not as a bad value."""
    if isinstance(value, Undefined):
        raise UndefinedError(f"{filter_name}: its input is undefined")

def fschat_patch_settings_errors(settings: dict[str, Any], host: str) -> list[str]:
    """Broken rules of the fschat_patch settings."""
    _defined(settings, "fschat_patch_settings_errors")
    if not isinstance(settings, dict) or not {"env_path", "fixed_since"} <= set(settings):
        raise AnsibleFilterError("fschat_patch_settings_errors: expected a mapping with env_path and fixed_since")
    errors = []
    env_path, fixed_since = settings["env_path"], settings["fixed_since"]
    if not (isinstance(env_path, str) and _PATH.match(env_path)):
        errors.append("fschat_patch_env_path must be the absolute prefix of the Python environment that holds fschat"
                      f" (the directory with bin/python), e.g. /opt/chatchat/envs/0.2.8; got '{env_path}' for host {host}.")
    if not (isinstance(fixed_since, str) and _VERSION.match(fixed_since)):
        errors.append(f"fschat_patch_fixed_since must be a version string such as \"0.2.35\"; got '{fixed_since}'"
                      f" for host {host}.")
    return errors


class FilterModule:
    """fschat_patch settings filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"fschat_patch_settings_errors": fschat_patch_settings_errors}
