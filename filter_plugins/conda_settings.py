"""The conda role's settings rules, as a filter returning the list of error messages.

The role's preflight asserts that the list is empty and shows the messages otherwise; every message
names the setting, what it got and the host. Unit tests: tests/unit/plugins/filter/test_conda_settings.py.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
conda_settings_errors:
  name: conda_settings_errors
  short_description: What is wrong with the conda role's settings of one host
  description:
    - C(installer_url) must be the http(s) URL of a C(.sh) installer, C(installer_sha256) 64 hex digits,
      C(version) a dotted numeric version; C(prefix) and C(condarc_path) absolute paths without spaces
      other than C(/), C(download_dir) an absolute path without spaces, C(profile_script) C("") or an
      absolute file path, C(download_retries) and C(download_delay) whole numbers of 0 or more.
    - The settings are the role's variables without the C(conda_) prefix.
  positional: _input
  options:
    _input:
      description: The settings (C(installer_url), C(installer_sha256), C(version), C(prefix), C(download_dir),
        C(condarc_path), C(profile_script), C(download_retries), C(download_delay)).
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
"""

EXAMPLES = r"""
conda_settings_errors: |
  # ["conda_version must be the conda version the installer brings, ... got 'latest' for host node1."]
  {{ {'installer_url': 'https://nexus/raw/Miniconda3.sh', 'installer_sha256': 'e5' * 32, 'version': 'latest',
      'prefix': '/opt/conda', 'download_dir': '/var/cache/conda', 'condarc_path': '/etc/conda/.condarc',
      'profile_script': '', 'download_retries': 5, 'download_delay': 5} | conda_settings_errors('node1') }}
"""

RETURN = r"""
conda_settings_errors:
  _value:
    description: One message per broken rule, each naming the setting and the host; empty when all hold.
    type: list
    elements: str
"""

_KEYS = ("installer_url", "installer_sha256", "version", "prefix", "download_dir", "condarc_path",
         "profile_script", "download_retries", "download_delay")
_URL = re.compile(r"^https?://[^\s/]+/\S*[^/\s]\.sh$")
_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")
_VERSION = re.compile(r"^[0-9]+([.][0-9]+){1,3}$")
_FILE_PATH = re.compile(r"^/\S*[^/\s]$")
_DIR_PATH = re.compile(r"^/\S*$")



def _defined(value: Any, filter_name: str) -> None:
    """An undefined input (a variable not set yet) fails as undefined, not as a bad value."""
    if isinstance(value, Undefined):
        raise UndefinedError(f"{filter_name}: its input is undefined")

def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.match(value) is not None


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.strip().isdigit()


def conda_settings_errors(settings: dict[str, Any], host: str) -> list[str]:
    """Broken rules of the conda settings."""
    _defined(settings, "conda_settings_errors")
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"conda_settings_errors: expected a mapping of settings, got {type(settings).__name__}")
    missing = [key for key in _KEYS if key not in settings]
    if missing:
        raise AnsibleFilterError(f"conda_settings_errors: settings lack {', '.join(missing)}")
    s = settings
    errors = []
    if not _matches(_URL, s["installer_url"]):
        errors.append("conda_installer_url must be the http(s) URL of a Linux .sh conda installer on the mirror, e.g."
                      " https://nexus.example.internal/repository/raw-hosted/conda/Miniconda3-py310_23.11.0-2-Linux-x86_64.sh;"
                      f" got '{s['installer_url']}' for host {host}.")
    if not _matches(_SHA256, s["installer_sha256"]):
        errors.append("conda_installer_sha256 must be the SHA-256 of the installer at conda_installer_url (64 hex digits,"
                      " e.g. the content of the mirror's <installer>.sha256 or `sha256sum <installer>`);"
                      f" got '{s['installer_sha256']}' for host {host}.")
    if not _matches(_VERSION, s["version"]):
        errors.append("conda_version must be the conda version the installer brings, as `conda --version` prints it"
                      f" (e.g. \"23.11.0\" for Miniconda3-py310_23.11.0-2); got '{s['version']}' for host {host}.")
    paths = [("conda_prefix", _matches(_FILE_PATH, s["prefix"]), s["prefix"]),
             ("conda_download_dir", _matches(_DIR_PATH, s["download_dir"]), s["download_dir"]),
             ("conda_condarc_path", _matches(_FILE_PATH, s["condarc_path"]), s["condarc_path"])]
    for name, good, value in paths:
        if not good:
            errors.append(f"{name} must be an absolute path without spaces (the installer refuses a prefix with spaces;"
                          f" the prefix cannot be /); got '{value}' for host {host}.")
    if not (s["profile_script"] == "" or _matches(_FILE_PATH, s["profile_script"])):
        errors.append(f"conda_profile_script must be \"\" or an absolute file path; got '{s['profile_script']}' for host {host}.")
    for name in ("download_retries", "download_delay"):
        if not _whole(s[name]):
            errors.append(f"conda_{name} must be a whole number of 0 or more; got {s[name]} for host {host}.")
    return errors


class FilterModule:
    """conda settings filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"conda_settings_errors": conda_settings_errors}
