"""The nexus_mirror role's settings rules, as a filter returning the list of error messages.

The role's preflight asserts that the list is empty and shows the messages otherwise; every message
names the setting and the host, and none shows the credentials. Unit tests:
tests/unit/plugins/filter/test_nexus_mirror.py.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
nexus_mirror_settings_errors:
  name: nexus_mirror_settings_errors
  short_description: What is wrong with the nexus_mirror settings of one host
  description:
    - "C(pypi_index_url) and every C(pypi_extra_index_urls) item must be http(s) URLs; with C(conda_enabled),
      C(conda_url) too, and C(conda_channels) / C(conda_default_channels) non-empty and without C(defaults);
      on Debian each C(apt_repositories) item needs http(s) C(uris), C(suites) and C(components), and
      C(apt_exclusive) at least one repository; on RedHat each C(yum_repositories) item needs a C(name) and
      an http(s) C(baseurl); C(username) and C(password) both or neither, without whitespace;
      C(ca_cert) empty or PEM content."
    - The settings are the role's variables without the C(nexus_mirror_) prefix. No message shows the
      username or the password.
  positional: _input
  options:
    _input:
      description: The settings.
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
    os_family:
      description: C(ansible_facts['os_family']); the apt rules apply to Debian, the yum rules to RedHat.
      type: str
      required: true
"""

EXAMPLES = r"""
nexus_mirror_settings_errors: |
  # ["nexus_mirror_pypi_index_url must be an http(s) URL ...; got 'not a url' for host node1."]
  {{ settings | nexus_mirror_settings_errors('node1', 'Debian') }}
"""

RETURN = r"""
nexus_mirror_settings_errors:
  _value:
    description: One message per broken rule, each naming the setting and the host; empty when all hold.
    type: list
    elements: str
"""

URL = re.compile(r"^https?://[A-Za-z0-9._~%\[\]:-]+(/\S*)?$")
_KEYS = ("pypi_index_url", "pypi_extra_index_urls", "conda_enabled", "conda_url", "conda_channels",
         "conda_default_channels", "apt_repositories", "apt_exclusive", "yum_repositories", "username", "password",
         "ca_cert")



def _defined(value: Any, filter_name: str) -> None:
    """An undefined input (a variable not set yet) fails as undefined, not as a bad value."""
    if isinstance(value, Undefined):
        raise UndefinedError(f"{filter_name}: its input is undefined")

def _url(value: Any) -> bool:
    return isinstance(value, str) and URL.search(value) is not None


def _items(value: Any) -> list[Any]:
    """A list setting or a single value as a list ([] for None/"")."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _bad_apt(repo: Any) -> bool:
    if not isinstance(repo, dict):
        return True
    uris = _items(repo.get("uris"))
    return (not uris or not all(_url(u) for u in uris) or not _items(repo.get("suites"))
            or not _items(repo.get("components")))


def _bad_yum(repo: Any) -> bool:
    return not isinstance(repo, dict) or not str(repo.get("name") or "") or not _url(repo.get("baseurl"))


def nexus_mirror_settings_errors(settings: dict[str, Any], host: str, os_family: str) -> list[str]:
    """Broken rules of the nexus_mirror settings (never showing the credentials)."""
    _defined(settings, "nexus_mirror_settings_errors")
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"nexus_mirror_settings_errors: expected a mapping of settings, got {type(settings).__name__}")
    missing = [key for key in _KEYS if key not in settings]
    if missing:
        raise AnsibleFilterError(f"nexus_mirror_settings_errors: settings lack {', '.join(missing)}")
    s = settings
    errors = []
    if not _url(s["pypi_index_url"]):
        errors.append("nexus_mirror_pypi_index_url must be an http(s) URL of the mirror's PyPI simple index, e.g."
                      " https://nexus.example.internal/repository/pypi-proxy/simple/ (without credentials: use"
                      f" nexus_mirror_username/nexus_mirror_password); got '{s['pypi_index_url']}' for host {host}.")
    bad_urls = [str(u) for u in _items(s["pypi_extra_index_urls"]) if not _url(u)]
    if bad_urls:
        errors.append("nexus_mirror_pypi_extra_index_urls must hold only http(s) URLs; not URLs for host"
                      f" {host}: {', '.join(bad_urls)}.")
    if s["conda_enabled"]:
        channels, defaults = _items(s["conda_channels"]), _items(s["conda_default_channels"])
        if not _url(s["conda_url"]) or not channels or "defaults" in channels or not defaults:
            errors.append("With nexus_mirror_conda_enabled, nexus_mirror_conda_url must be the http(s) URL of the"
                          f" mirror's conda proxy (got '{s['conda_url']}' for host {host}), and nexus_mirror_conda_channels"
                          " / nexus_mirror_conda_default_channels must be non-empty channel names, without 'defaults'"
                          " (it would reach the internet). Set nexus_mirror_conda_enabled: false to leave conda alone.")
    if os_family == "Debian":
        repos = _items(s["apt_repositories"])
        bad = [repo for repo in repos if _bad_apt(repo)]
        if bad:
            errors.append("Each item of nexus_mirror_apt_repositories needs http(s) 'uris', 'suites' and 'components';"
                          f" bad items for host {host}: {json.dumps(bad, sort_keys=True, default=str)}.")
        if s["apt_exclusive"] and not repos:
            errors.append("nexus_mirror_apt_exclusive: true needs at least one repository in nexus_mirror_apt_repositories"
                          f" (it would leave host {host} without package sources).")
    if os_family == "RedHat":
        bad = [repo for repo in _items(s["yum_repositories"]) if _bad_yum(repo)]
        if bad:
            errors.append("Each item of nexus_mirror_yum_repositories needs a 'name' and an http(s) 'baseurl';"
                          f" bad items for host {host}: {json.dumps(bad, sort_keys=True, default=str)}.")
    username, password = str(s["username"] or ""), str(s["password"] or "")
    if bool(username) != bool(password) or re.search(r"\s", username) or re.search(r"\s", password):
        errors.append(f"Set both nexus_mirror_username and nexus_mirror_password, or neither, for host {host};"
                      " neither may contain whitespace (apt's auth.conf cannot hold it).")
    cert = str(s["ca_cert"] or "")
    if cert and not ("-----BEGIN CERTIFICATE-----" in cert and "-----END CERTIFICATE-----" in cert):
        errors.append(f"nexus_mirror_ca_cert must be PEM content (-----BEGIN CERTIFICATE----- ...), not a path, for host {host}.")
    return errors


class FilterModule:
    """nexus_mirror settings filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"nexus_mirror_settings_errors": nexus_mirror_settings_errors}
