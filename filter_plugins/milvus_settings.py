"""Checks of the milvus role's settings (used by its preflight only).

Each filter takes the settings as one mapping (the role's variables without the milvus_ prefix)
and the host's name, and returns one sentence per problem, naming the variable and the host; an
empty list means the settings are good. Secrets are never echoed.

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and
RETURN are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import json
import re
from typing import Any

DOCUMENTATION = r"""
milvus_settings_errors:
  name: milvus_settings_errors
  short_description: Every problem of the milvus role's common settings, one sentence each
  description:
    - Passwords (length, not the factory default, distinct), the application user, role and smoke
      collection names (Milvus's name rules), the application privileges, the ports (1-65535,
      distinct, with the pip method's internal ports) and the PyPI index of the client venv.
    - Each sentence names the variable and the host; passwords are never shown.
  positional: _input
  options:
    _input:
      description: >-
        The settings without the milvus_ prefix - root_password, root_initial_password, app_password,
        app_user, app_role, smoke_collection, app_privileges, method, port, metrics_port,
        pip_internal_ports, pip_index_url.
      type: dict
      required: true
    host: {description: The host's name (inventory_hostname)., type: str, required: true}
milvus_compose_errors:
  name: milvus_compose_errors
  short_description: Every problem of the compose method's settings, one sentence each
  description:
    - The registry, the three images pinned by tag and digest, the minio credentials, the compose
      command and the compose and data directories. The secret key is never shown.
  positional: _input
  options:
    _input:
      description: >-
        compose_registry, compose_images, minio_access_key, minio_secret_key, compose_command,
        compose_dir, data_dir.
      type: dict
      required: true
    host: {description: The host's name., type: str, required: true}
milvus_package_errors:
  name: milvus_package_errors
  short_description: Every problem of the package method's settings, one sentence each
  description:
    - The package URL (http(s), .deb or .rpm, the OS's format when known) and its SHA-256, the
      minio credentials and the paths written into the drop-ins. The secret key is never shown.
  positional: _input
  options:
    _input:
      description: >-
        package_url, package_sha256, package_format (deb, rpm or empty), minio_access_key,
        minio_secret_key, data_dir, systemd_dir.
      type: dict
      required: true
    host: {description: The host's name., type: str, required: true}
"""

EXAMPLES = r"""
milvus_settings_errors: |
  {{ {'root_password': milvus_root_password, 'app_user': milvus_app_user, ...}
     | milvus_settings_errors(inventory_hostname) }}
milvus_compose_errors: |
  {{ {'compose_registry': milvus_compose_registry, ...} | milvus_compose_errors(inventory_hostname) }}
milvus_package_errors: |
  {{ {'package_url': milvus_package_url, ...} | milvus_package_errors(inventory_hostname) }}
"""

RETURN = r"""
milvus_settings_errors:
  _value: {description: One sentence per problem; empty when the settings are good., type: list, elements: str}
milvus_compose_errors:
  _value: {description: One sentence per problem; empty when the settings are good., type: list, elements: str}
milvus_package_errors:
  _value: {description: One sentence per problem; empty when the settings are good., type: list, elements: str}
"""

APP_USER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
APP_ROLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,254}$")
COLLECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
INDEX_URL_RE = re.compile(r"^https?://[^/]+")
PRIVILEGE_OBJECTS = ("Global", "Collection", "User")
REGISTRY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
PATH_RE = re.compile(r"^/[^\s%]*$")
PACKAGE_URL_RE = re.compile(r"^https?://[^\s/]+/\S+[.](deb|rpm)$")
SHA256_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
MINIO_FACTORY_SECRET = "minioadmin"


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _password_errors(name: str, value: Any, host: str) -> list[str]:
    if not isinstance(value, str) or not 8 <= len(value) <= 256:
        return [f"{name} must be set to 8 to 256 characters on host {host} (keep it in Vault, e.g. vault_{name})."]
    return []


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def milvus_settings_errors(settings: dict, host: str) -> list[str]:
    """Problems of the settings every method shares (see DOCUMENTATION)."""
    errors: list[str] = []
    root, app = settings.get("root_password"), settings.get("app_password")
    initial = settings.get("root_initial_password", "Milvus")
    errors += _password_errors("milvus_root_password", root, host)
    errors += _password_errors("milvus_app_password", app, host)
    if isinstance(root, str) and root == initial:
        errors.append(f"milvus_root_password must not be the factory default '{initial}' (host {host}).")
    if isinstance(root, str) and root and root == app:
        errors.append(f"milvus_app_password must differ from milvus_root_password (host {host}).")

    user = settings.get("app_user")
    if not isinstance(user, str) or not APP_USER_RE.match(user) or user == "root":
        errors.append(f"milvus_app_user ({_show(user)}) must start with a letter, hold only letters, digits and "
                      f"underscores (32 at most) and not be root (host {host}).")
    for key, pattern in (("app_role", APP_ROLE_RE), ("smoke_collection", COLLECTION_RE)):
        value = settings.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            errors.append(f"milvus_{key} ({_show(value)}) must follow Milvus's name rules "
                          f"([A-Za-z_][A-Za-z0-9_]*, 255 characters at most) (host {host}).")

    privileges = settings.get("app_privileges")
    good = (isinstance(privileges, list) and privileges
            and all(isinstance(p, (list, tuple)) and len(p) == 3 and p[0] in PRIVILEGE_OBJECTS for p in privileges))
    if not good:
        errors.append(f"milvus_app_privileges must be a list of [object type, object name, privilege] triples with "
                      f"an object type of Global, Collection or User; got {_show(privileges)} (host {host}).")

    method = settings.get("method")
    named = {"milvus_port": settings.get("port"), "milvus_metrics_port": settings.get("metrics_port")}
    if method == "pip":
        internal = settings.get("pip_internal_ports") or {}
        named.update({f"milvus_pip_internal_ports.{k}": v for k, v in internal.items()})
    ports = {name: _port(value) for name, value in named.items()}
    bad = [name for name, port in ports.items() if port is None or not 1 <= port <= 65535]
    if bad:
        errors.append(f"Milvus's ports must be numbers between 1 and 65535: {', '.join(bad)} "
                      f"({', '.join(_show(named[n]) for n in bad)}) (host {host}).")
    seen: dict[int, list[str]] = {}
    for name, port in ports.items():
        if port is not None:
            seen.setdefault(port, []).append(name)
    for port, names in seen.items():
        if len(names) > 1:
            errors.append(f"Milvus's ports must be distinct: {' and '.join(names)} are all {port} (host {host}).")

    index = settings.get("pip_index_url")
    if not isinstance(index, str) or not INDEX_URL_RE.match(index):
        errors.append(f"milvus_pip_index_url must be the mirror's PyPI simple index (http or https), got "
                      f"{_show(index)} (host {host}).")
    return errors


def _minio_errors(settings: dict, host: str) -> list[str]:
    errors = []
    access, secret = settings.get("minio_access_key"), settings.get("minio_secret_key")
    if not isinstance(access, str) or not re.match(r"^\S{3,}$", access):
        errors.append(f"milvus_minio_access_key must have 3 or more characters without spaces (got {_show(access)}) "
                      f"for host {host}.")
    if (not isinstance(secret, str) or len(secret) < 8 or secret == MINIO_FACTORY_SECRET or secret == access
            or re.search(r"[\r\n]", secret)):
        errors.append(f"milvus_minio_secret_key must be set (8 or more characters on one line, not "
                      f"'{MINIO_FACTORY_SECRET}' and not equal to the access key; keep it in Vault) for host {host}.")
    return errors


def _path_errors(settings: dict, keys: tuple[str, ...], host: str) -> list[str]:
    return [f"milvus_{key} must be an absolute path without spaces or '%' (systemd and compose would split or "
            f"expand it); got {_show(settings.get(key))} for host {host}."
            for key in keys if not isinstance(settings.get(key), str) or not PATH_RE.match(settings[key])]


def milvus_compose_errors(settings: dict, host: str) -> list[str]:
    """Problems of the compose method's settings (see DOCUMENTATION)."""
    errors: list[str] = []
    registry = settings.get("compose_registry")
    if not isinstance(registry, str) or not REGISTRY_RE.match(registry):
        errors.append(f"milvus_compose_registry must be the mirror's docker registry (host[:port][/path], no scheme, "
                      f"no trailing slash), e.g. nexus.example.internal:8443; got {_show(registry)} for host {host}.")
        registry = "REGISTRY"
    images = settings.get("compose_images")
    if not isinstance(images, dict) or sorted(images) != ["etcd", "milvus", "minio"]:
        errors.append(f"milvus_compose_images must map exactly etcd, minio and milvus to {{name, tag, digest}}; got "
                      f"{_show(images)} for host {host}.")
    else:
        for service in sorted(images):
            image = images[service] if isinstance(images[service], dict) else {}
            name, tag, digest = (str(image.get(k, "")) for k in ("name", "tag", "digest"))
            if not (IMAGE_NAME_RE.match(name) and IMAGE_TAG_RE.match(tag) and DIGEST_RE.match(digest)):
                errors.append(
                    f"milvus_compose_images.{service} must have a name, a tag and a digest 'sha256:<64 lowercase hex>' "
                    f"(got name '{name}', tag '{tag}', digest '{digest}') for host {host}. The digest is the checksum "
                    f"of what is pulled: read it from the mirror with `docker buildx imagetools inspect "
                    f"{registry}/{name or 'NAME'}:{tag or 'TAG'}` (the top-level Digest line).")
    errors += _minio_errors(settings, host)
    command = settings.get("compose_command")
    if (isinstance(command, str) or not isinstance(command, (list, tuple)) or not command
            or not all(isinstance(a, str) and not re.search(r"\s", a) for a in command)
            or not re.match(r"^/\S+$", command[0])):
        errors.append(f"milvus_compose_command must be a list whose first element is an absolute path, such as "
                      f"[\"/usr/bin/docker\", \"compose\"] or [\"/usr/bin/podman-compose\"] (got {_show(command)}) "
                      f"for host {host}.")
    errors += _path_errors(settings, ("compose_dir", "data_dir"), host)
    return errors


def milvus_package_errors(settings: dict, host: str) -> list[str]:
    """Problems of the package method's settings (see DOCUMENTATION)."""
    errors: list[str] = []
    url, sha = settings.get("package_url"), settings.get("package_sha256")
    fmt = settings.get("package_format") or ""
    if not isinstance(url, str) or not PACKAGE_URL_RE.match(url) or (fmt and not url.endswith(f".{fmt}")):
        errors.append(f"The package method needs milvus_package_url, the http(s) URL of the Milvus standalone "
                      f".{fmt or 'deb/.rpm'} on the mirror (got {_show(url).replace(chr(34), chr(39))}) for host {host}.")
    if not isinstance(sha, str) or not SHA256_RE.match(sha):
        errors.append(f"The package method needs milvus_package_sha256, its SHA-256 in 64 hex digits (got "
                      f"{_show(sha).replace(chr(34), chr(39))}; the mirror's raw repository has it in <file>.sha256, "
                      f"or run sha256sum on the file) for host {host}.")
    errors += _minio_errors(settings, host)
    errors += _path_errors(settings, ("data_dir", "systemd_dir"), host)
    return errors


class FilterModule:
    """The milvus role's settings checks."""

    def filters(self) -> dict[str, Any]:
        return {"milvus_settings_errors": milvus_settings_errors, "milvus_compose_errors": milvus_compose_errors,
                "milvus_package_errors": milvus_package_errors}
