"""Keep the calls between a node's own services off any HTTP proxy.

Corporate images often hand every service a proxy through systemd's manager environment
(DefaultEnvironment= in /etc/systemd/system.conf, or `systemctl set-environment`). FastChat's
workers, its openai_api server, Chatchat's API and our pre-start check then send their calls to the
controller, to each other and to Milvus through that proxy, and fail. These filters read the manager's
environment and give every unit a no_proxy that covers the local addresses, merged with what the
site already excludes.

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import ipaddress
import shlex
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
systemd_environment:
  name: systemd_environment
  short_description: The output of C(systemctl show-environment) as a dict
  description:
    - One C(NAME=value) per line; systemd quotes a value with special characters as C($'...'), which is unquoted.
  positional: _input
  options:
    _input: {description: The command's standard output., type: str, required: true}
no_proxy_environment:
  name: no_proxy_environment
  short_description: The proxy settings a node's services see, and the no_proxy that keeps local calls direct
  description:
    - Looks for http_proxy, https_proxy and all_proxy (either case) in each environment, later ones winning
      (the manager's, then the role's own).
    - The result's no_proxy is the site's entries (no_proxy and NO_PROXY of every environment, in order) followed
      by the given hosts, without repeats; it is set in both cases whether or not a proxy is there today, so
      a proxy added later to the manager cannot break the services.
    - IPv6 addresses are left out of it (and listed in C(left_out)), bare or in brackets. Chatchat v0.2.8's
      get_httpx_client makes an httpx proxy key C(all://<entry>) of every no_proxy entry, and a bare IPv6 address
      there (C(all://::1)) is an invalid URL ("Invalid port"), which fails the API server's calls to the controller
      (C(/llm_model/list_running_models); the WebUI's dialogue page then raises). The services talk over IPv4.
  positional: _input, hosts
  options:
    _input: {description: The environments (dicts) the services get, lowest precedence first., type: list, elements: dict, required: true}
    hosts: {description: "Hosts the services reach directly: localhost, 127.0.0.1, the node's names and addresses, the controller's and Milvus's hosts.", type: list, elements: str, required: true}
"""

EXAMPLES = r"""
systemd_environment: |
  # {{ "LANG=C.UTF-8\nhttp_proxy=http://proxy.example.internal:3128" | systemd_environment }}
  # -> {"LANG": "C.UTF-8", "http_proxy": "http://proxy.example.internal:3128"}
no_proxy_environment: |
  # {{ [manager_env, chatchat_services_environment] | no_proxy_environment(['localhost', '127.0.0.1']) }}
  # with http_proxy set in the manager and no_proxy=.example.internal,::1:
  # -> {"proxies": ["http_proxy"], "uncovered": ["localhost", "127.0.0.1"], "left_out": ["::1"],
  #     "environment": {"no_proxy": ".example.internal,localhost,127.0.0.1", "NO_PROXY": "..."}}
"""

RETURN = r"""
systemd_environment:
  _value: {description: Variable name to value., type: dict}
no_proxy_environment:
  _value:
    description: What the services' environment holds and what to add to it.
    type: dict
    contains:
      proxies: {description: The proxy variables set (names), type: list, elements: str}
      uncovered: {description: The hosts the site's own no_proxy does not exclude (a problem only when proxies is not empty)., type: list, elements: str}
      left_out: {description: The IPv6 addresses left out of the merged no_proxy., type: list, elements: str}
      environment: {description: "no_proxy and NO_PROXY, the same merged list.", type: dict}
"""

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def systemd_environment(text: str) -> dict[str, str]:
    """NAME=value lines (systemctl show-environment) as a dict."""
    if not isinstance(text, str):
        raise AnsibleFilterError(f"systemd_environment: expected the command's output as text, got {text!r}")
    environment = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep or not name:
            continue
        if value.startswith("$'"):
            # systemd's C-style quoting for values with special characters.
            value = value[2:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        elif value.startswith(("'", '"')):
            value = " ".join(shlex.split(value))
        environment[name] = value
    return environment


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _is_ipv6(entry: str) -> bool:
    try:
        ipaddress.IPv6Network(entry.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


def _covers(entries: list[str], host: str) -> bool:
    """curl/requests/urllib semantics: '*', the host itself, or a domain suffix (with or without a leading dot)."""
    for entry in entries:
        if entry == "*" or entry == host:
            return True
        suffix = entry if entry.startswith(".") else "." + entry
        if host.endswith(suffix):
            return True
    return False


def no_proxy_environment(environments: list[dict[str, Any]], hosts: list[str]) -> dict[str, Any]:
    """The proxy variables the services see and a merged no_proxy covering the local hosts."""
    if not isinstance(environments, list) or not all(isinstance(env, dict) for env in environments):
        raise AnsibleFilterError(f"no_proxy_environment: expected a list of environment dicts, got {environments!r}")
    if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
        raise AnsibleFilterError(f"no_proxy_environment: expected a list of host names, got {hosts!r}")
    proxies: dict[str, str] = {}
    site: list[str] = []
    for environment in environments:
        for name, value in environment.items():
            if name.lower() in PROXY_VARIABLES:
                if str(value).strip():
                    proxies[name] = str(value)
                else:
                    proxies.pop(name, None)
            elif name.lower() == "no_proxy":
                site += _entries(str(value))
    merged: list[str] = []
    for entry in site + [host.strip() for host in hosts if host.strip()]:
        if entry not in merged:
            merged.append(entry)
    value = ",".join(entry for entry in merged if not _is_ipv6(entry))
    return {"proxies": sorted(proxies),
            "uncovered": [host for host in dict.fromkeys(hosts) if host.strip() and not _covers(site, host.strip())],
            "left_out": [entry for entry in merged if _is_ipv6(entry)],
            "environment": {"no_proxy": value, "NO_PROXY": value}}


class FilterModule:
    """Proxy exclusion filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"systemd_environment": systemd_environment, "no_proxy_environment": no_proxy_environment}
