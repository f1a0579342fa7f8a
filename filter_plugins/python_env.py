"""The python_env role's settings rules and its install stamp (a digest of everything a checked
install depended on).

This file holds three filters. ansible-doc reads one documentation block per plugin file, so the
DOCUMENTATION, EXAMPLES and RETURN blocks below are YAML mappings keyed by filter name
(tests/unit/plugins/filter/test_python_env.py checks that every filter has all three).

After a run whose install and checks passed, the role writes the digest into
<prefix>/chatfleet-installed.json. A later run whose freshly computed digest equals it skips the dry
run, pip check and the import checks: the env is exactly what was checked last time. A changed pin,
constraint or requirement file, another installer, other import checks, or a distribution installed,
removed or upgraded by hand gives another digest.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
python_env_settings_errors:
  name: python_env_settings_errors
  short_description: What is wrong with the python_env settings of one host
  description:
    - "C(python_version) must be a Python 3 version with two or three components; C(name) a plain name
      (letters, digits, C(. _ -)) and C(prefix) an absolute path other than C(/); C(index_url) an http(s) URL;
      C(packages) and C(constraints) lists of requirement strings (one each, no pip options);
      C(requirement_files) a list of absolute paths; C(import_checks) a list of module names; with the
      installer C(uv), C(uv_version) a uv release such as C(0.13.9)."
    - The settings are the role's variables without the C(python_env_) prefix. The index URL's credentials
      are never shown.
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
python_env_distributions:
  name: python_env_distributions
  short_description: C(name==version) of each installed distribution, from the names of its metadata directories
  description:
    - Reads C(<name>-<version>.dist-info) (and C(.egg-info)) directory names, as found in site-packages,
      without opening them; names are normalised as PEP 503 does (C(Foo_Bar) is C(foo-bar)).
    - Other names are ignored. The result is sorted and without duplicates.
  positional: _input
  options:
    _input:
      description: Directory names (or paths; only the last component is read).
      type: list
      elements: str
      required: true
python_env_install_digest:
  name: python_env_install_digest
  short_description: SHA-256 over the inputs and the result of a python_env install
  description:
    - Hashes the content digests of the pins file, the constraints file and every requirement file (by
      file name, a missing file as null), the installer and the installed distributions, and the import checks.
    - A file's directory is left out, so that a new release whose requirement files hold what the last
      release's held (a rollout or a rollback) finds the env as the last run checked it.
  positional: _input
  options:
    _input:
      description: "The env probe's result: C(files) (path to the SHA-256 of its content, or null) and
        C(dists) (the metadata directory names of site-packages)."
      type: dict
      required: true
    installer:
      description: C(pip) or C(uv) (its version is among the distributions).
      type: str
      required: true
    import_checks:
      description: The modules the role imports after an install.
      type: list
      elements: str
      required: true
"""

EXAMPLES = r"""
python_env_settings_errors: |
  # ["python_env_index_url is required: ...; got '' for host node1."]
  {{ {'python_version': '3.10.12', 'name': '0.2.8', 'prefix': '/opt/chatchat/envs/0.2.8', 'index_url': '',
      'packages': [], 'constraints': [], 'requirement_files': [], 'import_checks': [], 'installer': 'pip',
      'uv_version': '0.13.9'} | python_env_settings_errors('node1') }}
python_env_distributions: |
  # ['fschat==0.2.33', 'pip==24.0']
  {{ ['pip-24.0.dist-info', 'fschat-0.2.33.dist-info', 'fastchat'] | python_env_distributions }}
python_env_install_digest: |
  # '3f5c...' (64 hex digits)
  {{ {'files': {'/opt/env/chatfleet-requirements.txt': 'ab12...'}, 'dists': ['pip-24.0.dist-info']}
     | python_env_install_digest('pip', ['fastchat']) }}
"""

RETURN = r"""
python_env_settings_errors:
  _value:
    description: One message per broken rule, each naming the setting and the host; empty when all hold.
    type: list
    elements: str
python_env_distributions:
  _value:
    description: Sorted C(name==version) strings.
    type: list
    elements: str
python_env_install_digest:
  _value:
    description: The SHA-256 hex digest.
    type: str
"""

_METADATA_DIR = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._]*?)-(?P<version>[^-/]+?)(?:-py[0-9.]+(?:-[^/]*)?)?\.(?:dist|egg)-info$")



def _defined(value: Any, filter_name: str) -> None:
    """An undefined input (a variable not set yet) fails as undefined, not as a bad value."""
    if isinstance(value, Undefined):
        raise UndefinedError(f"{filter_name}: its input is undefined")

def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_env_distributions(names: list[str]) -> list[str]:
    """`name==version` of each metadata directory name; other names are ignored."""
    _defined(names, "python_env_distributions")
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise AnsibleFilterError(f"python_env_distributions: expected a list of directory names, got {type(names).__name__}")
    found = set()
    for entry in names:
        match = _METADATA_DIR.match(str(entry).rstrip("/").rsplit("/", 1)[-1])
        if match:
            found.add(f"{_normalise(match['name'])}=={match['version']}")
    return sorted(found)


def python_env_install_digest(probe: dict[str, Any], installer: str, import_checks: list[str]) -> str:
    """SHA-256 over the files' digests, the installer, the distributions and the import checks."""
    _defined(probe, "python_env_install_digest")
    if not isinstance(probe, dict) or not isinstance(probe.get("files"), dict) or not isinstance(probe.get("dists"), list):
        raise AnsibleFilterError("python_env_install_digest: expected the env probe's result with 'files' (a mapping)"
                                 " and 'dists' (a list)")
    document = {
        "files": sorted([posixpath.basename(str(path)), probe["files"][path]] for path in probe["files"]),
        "installer": str(installer),
        "distributions": python_env_distributions(probe["dists"]),
        "import_checks": [str(name) for name in import_checks],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode("utf-8")).hexdigest()


_SETTINGS = ("python_version", "name", "prefix", "index_url", "packages", "constraints", "requirement_files",
             "import_checks", "installer", "uv_version")
_PYTHON_VERSION = re.compile(r"^3([.][0-9]+){1,2}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PREFIX = re.compile(r"^/\S*[^/\s]$")
_INDEX_URL = re.compile(r"^https?://[^\s/]+/\S*$")
_REQUIREMENT_OPTION = re.compile(r"^\s*(-|$)|\n")
_ABSOLUTE = re.compile(r"^/\S+$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*)*$")
_UV_VERSION = re.compile(r"^[0-9]+([.][0-9]+){1,3}$")


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def python_env_settings_errors(settings: dict[str, Any], host: str) -> list[str]:
    """Broken rules of the python_env settings (never showing the index URL's credentials)."""
    _defined(settings, "python_env_settings_errors")
    if not isinstance(settings, dict) or any(key not in settings for key in _SETTINGS):
        raise AnsibleFilterError(f"python_env_settings_errors: expected a mapping with {', '.join(_SETTINGS)}")
    s = settings
    errors = []
    if not (isinstance(s["python_version"], str) and _PYTHON_VERSION.match(s["python_version"])):
        errors.append("python_env_python_version must be a Python 3 version with two or three components, such as"
                      ' "3.10.12" (exactly that release) or "3.10" (any 3.10.x);'
                      f" got '{s['python_version']}' for host {host}.")
    if not (isinstance(s["name"], str) and _NAME.match(s["name"]) and isinstance(s["prefix"], str)
            and _PREFIX.match(s["prefix"])):
        errors.append("python_env_prefix must be an absolute path other than / (the env's directory, e.g."
                      " /opt/chatchat/envs/0.2.8) and python_env_name a plain name (letters, digits, . _ -);"
                      f" got prefix '{s['prefix']}' and name '{s['name']}' for host {host}.")
    if not (isinstance(s["index_url"], str) and _INDEX_URL.match(s["index_url"])):
        shown = re.sub(r"//[^/@]*@", "//***@", str(s["index_url"]))
        errors.append("python_env_index_url is required: the mirror's PyPI simple index (the inventory's"
                      " mirror_pypi_index_url, e.g. https://nexus.example.internal/repository/pypi-proxy/simple/);"
                      f" got '{shown}' for host {host}.")
    lists = {name: s[name] for name in ("packages", "constraints", "requirement_files", "import_checks")}
    bad = [name for name, value in lists.items() if not _is_list(value) or not all(isinstance(v, str) for v in value)]
    if not bad:
        bad += [name for name in ("packages", "constraints") if any(_REQUIREMENT_OPTION.search(v) for v in lists[name])]
        bad += ["requirement_files"] if not all(_ABSOLUTE.match(v) for v in lists["requirement_files"]) else []
        bad += ["import_checks"] if not all(_MODULE.match(v) for v in lists["import_checks"]) else []
    if bad:
        errors.append("python_env_packages and python_env_constraints must be lists of requirement strings (one"
                      " requirement each, no pip options), python_env_requirement_files a list of absolute paths on"
                      " the node, and python_env_import_checks a list of module names; wrong: "
                      + ", ".join(f"python_env_{name} {lists[name]}" for name in dict.fromkeys(bad))
                      + f" for host {host}.")
    if s["installer"] == "uv" and not (isinstance(s["uv_version"], str) and _UV_VERSION.match(s["uv_version"])):
        errors.append(f"python_env_uv_version must be a uv release such as \"0.13.9\"; got '{s['uv_version']}'"
                      f" for host {host}.")
    return errors


class FilterModule:
    """python_env settings and install stamp filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "python_env_settings_errors": python_env_settings_errors,
            "python_env_distributions": python_env_distributions,
            "python_env_install_digest": python_env_install_digest,
        }
