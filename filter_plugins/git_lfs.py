"""The git_lfs role's settings rules, as a filter returning the list of error messages.

The role's preflight asserts that the list is empty and shows the messages otherwise; every message
names the setting, what it got and the host. Unit tests: tests/unit/plugins/filter/test_git_lfs.py.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
git_lfs_settings_errors:
  name: git_lfs_settings_errors
  short_description: What is wrong with the git_lfs settings of one host
  description:
    - C(min_version) must be a version such as C(3.0.0) (one to four numbers); with C(install_method) C(mirror),
      C(package_url) must be the http(s) URL of a package of the host's format and C(package_sha256) 64 hex
      digits; C(concurrent_transfers) must be 1 or more and C(activity_timeout) null or 0 or more.
    - The settings are the role's variables without the C(git_lfs_) prefix.
  positional: _input
  options:
    _input:
      description: The settings (C(min_version), C(install_method), C(package_url), C(package_sha256),
        C(concurrent_transfers), C(activity_timeout)).
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
    package_format:
      description: The host's package file format, C(deb) or C(rpm).
      type: str
      required: true
"""

EXAMPLES = r"""
git_lfs_settings_errors: |
  # ['git_lfs_install_method "mirror" needs git_lfs_package_url, ... for host node1.']
  {{ {'min_version': '3.0.0', 'install_method': 'mirror', 'package_url': '', 'package_sha256': '',
      'concurrent_transfers': 8, 'activity_timeout': none} | git_lfs_settings_errors('node1', 'deb') }}
"""

RETURN = r"""
git_lfs_settings_errors:
  _value:
    description: One message per broken rule, each naming the setting and the host; empty when all hold.
    type: list
    elements: str
"""

_KEYS = ("min_version", "install_method", "package_url", "package_sha256", "concurrent_transfers", "activity_timeout")
_VERSION = re.compile(r"^[0-9]+([.][0-9]+){0,3}$")
_URL = re.compile(r"^https?://[^\s/]+/\S+$")
_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")



def _defined(value: Any, filter_name: str) -> None:
    """An undefined input (a variable not set yet) fails as undefined, not as a bad value."""
    if isinstance(value, Undefined):
        raise UndefinedError(f"{filter_name}: its input is undefined")

def _int_at_least(value: Any, minimum: int) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(str(value).strip()) >= minimum
    except ValueError:
        return False


def git_lfs_settings_errors(settings: dict[str, Any], host: str, package_format: str) -> list[str]:
    """Broken rules of the git_lfs settings."""
    _defined(settings, "git_lfs_settings_errors")
    if not isinstance(settings, dict) or any(key not in settings for key in _KEYS):
        raise AnsibleFilterError(f"git_lfs_settings_errors: expected a mapping with {', '.join(_KEYS)}")
    s = settings
    errors = []
    if not (isinstance(s["min_version"], str) and _VERSION.match(s["min_version"])):
        errors.append(f"git_lfs_min_version must be a version such as \"3.0.0\"; got '{s['min_version']}' for host {host}.")
    if s["install_method"] == "mirror":
        url, sha256 = s["package_url"], s["package_sha256"]
        url_ok = isinstance(url, str) and _URL.match(url) is not None and url.endswith(f".{package_format}")
        if not url_ok or not (isinstance(sha256, str) and _SHA256.match(sha256)):
            errors.append(f"git_lfs_install_method \"mirror\" needs git_lfs_package_url, the http(s) URL of a .{package_format}"
                          f" package on the mirror (got '{url}'), and git_lfs_package_sha256, its 64-hex-digit SHA-256"
                          f" (got '{sha256}'), for host {host}.")
    if not _int_at_least(s["concurrent_transfers"], 1) or not (s["activity_timeout"] is None
                                                               or _int_at_least(s["activity_timeout"], 0)):
        errors.append(f"git_lfs_concurrent_transfers must be 1 or more (got {s['concurrent_transfers']}) and"
                      f" git_lfs_activity_timeout null or 0 or more seconds (got {s['activity_timeout']}), for host {host}.")
    return errors


class FilterModule:
    """git_lfs settings filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"git_lfs_settings_errors": git_lfs_settings_errors}
