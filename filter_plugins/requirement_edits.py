"""Edits of a release's requirement files (python_env_requirement_edits): drop a requirement, replace
one with another specifier, add one.

A site keeps the release's requirement files as upstream wrote them and says, in its inventory, what
differs on its hosts (the CPU lab: no vllm, xformers, torchvision or torchaudio, the CPU build of
torch, unstructured without its pdf and image extras, pymilvus and python-multipart added). The role
installs the edited set in place of the files; an edit that names a requirement none of the files
holds is an error, so an edit cannot outlive the line it was written for unnoticed.

This file holds two filters. ansible-doc reads one documentation block per plugin file, so the
DOCUMENTATION, EXAMPLES and RETURN blocks below are YAML mappings keyed by filter name.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

DOCUMENTATION = r"""
requirement_edit_errors:
  name: requirement_edit_errors
  short_description: What is wrong with a host's requirement edits, read against its requirement files
  description:
    - "The edits are a mapping with up to three keys: C(drop) (a list of requirement names), C(replace)
      (a mapping of requirement name to the requirement string that takes its line) and C(add) (a list of
      requirement strings)."
    - Every name that C(drop) or C(replace) gives must be a requirement of at least one of the files; a
      replacement must name the requirement it replaces; an added requirement must not be one the files
      already hold (replace it instead). Names compare as PEP 503 normalises them (C(Foo_Bar) is C(foo-bar)).
    - Requirement strings hold one requirement each, without pip options.
  positional: _input
  options:
    _input:
      description: The requirement files, as a mapping of path to content.
      type: dict
      required: true
    edits:
      description: The edits (python_env_requirement_edits).
      type: dict
      required: true
    host:
      description: The inventory hostname, named in every message.
      type: str
      required: true
requirements_edited:
  name: requirements_edited
  short_description: One requirement file with the edits applied to every file's requirements
  description:
    - The files' lines in order, each file after a comment naming it, with dropped requirements left out
      and replaced ones rewritten (a comment keeps the upstream line), then the added requirements.
      Comments, blank lines and pip options stay as they were.
    - Fails on edits that requirement_edit_errors finds wrong.
  positional: _input
  options:
    _input:
      description: The requirement files, as a mapping of path to content.
      type: dict
      required: true
    edits:
      description: The edits (python_env_requirement_edits).
      type: dict
      required: true
"""

EXAMPLES = r"""
requirement_edit_errors: |
  - ansible.builtin.assert:
      that: _errors | length == 0
      fail_msg: "{{ _errors | join(' ') }}"
    vars:
      _errors: "{{ {'/opt/app/requirements.txt': _text} | requirement_edit_errors(python_env_requirement_edits, inventory_hostname) }}"
requirements_edited: |
  - ansible.builtin.copy:
      content: "{{ {'/opt/app/requirements.txt': _text} | requirements_edited({'drop': ['vllm'], 'replace': {'torch': 'torch==2.13.0'}}) }}"
      dest: /opt/app/env/chatfleet-edited-requirements.txt
"""

RETURN = r"""
requirement_edit_errors:
  _value:
    description: One message per broken rule, naming the variable, the requirement and the host; empty when the edits fit the files.
    type: list
    elements: str
requirements_edited:
  _value:
    description: The content of the edited requirement file.
    type: str
"""

EDITS_VARIABLE = "python_env_requirement_edits"
EDIT_KEYS = ("drop", "replace", "add")
# The name at the start of a requirement line (PEP 508), and the lines that are not requirements.
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_COMMENT = re.compile(r"(^|\s)#.*$")
_OPTION = re.compile(r"^\s*-")
_VALID_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    """The normalised name of the requirement on `line`, or None for comments, blank lines and options."""
    text = _COMMENT.sub("", line).strip()
    if not text or _OPTION.match(text):
        return None
    match = _NAME.match(text)
    return _normalise(match.group(1)) if match else None


def _defined(*values: Any) -> None:
    # An undefined input is Jinja's error, as for any other undefined variable (ansible-lint templates
    # tasks without the role's variables and tolerates exactly that).
    for value in values:
        if isinstance(value, Undefined):
            raise UndefinedError("requirement edits: an input is undefined")


def _edits(edits: Any) -> tuple[list[str], dict[str, str], list[str]]:
    if not isinstance(edits, dict) or set(edits) - set(EDIT_KEYS):
        raise AnsibleFilterError(f"{EDITS_VARIABLE} must be a mapping with the keys {', '.join(EDIT_KEYS)} only;"
                                 f" got {edits!r}")
    drop, replace, add = edits.get("drop") or [], edits.get("replace") or {}, edits.get("add") or []
    if not (isinstance(drop, list) and all(isinstance(n, str) for n in drop)
            and isinstance(replace, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in replace.items())
            and isinstance(add, list) and all(isinstance(r, str) for r in add)):
        raise AnsibleFilterError(f"{EDITS_VARIABLE}: drop must be a list of names, replace a mapping of name to"
                                 f" requirement string and add a list of requirement strings; got {edits!r}")
    return drop, replace, add


def _files(files: Any) -> dict[str, str]:
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise AnsibleFilterError(f"requirement edits: expected a mapping of requirement file path to content; got {files!r}")
    return files


def requirement_edit_errors(files: dict[str, str], edits: dict[str, Any], host: str) -> list[str]:
    """Broken rules of the edits, read against the files they edit."""
    _defined(files, edits)
    drop, replace, add = _edits(edits)
    held = {name for text in _files(files).values() for name in map(_requirement_name, text.splitlines()) if name}
    where = f"({', '.join(files) or 'no requirement files'}) on host {host}"
    errors = []
    bad_names = [name for name in [*drop, *replace] if not _VALID_NAME.match(name)]
    bad_strings = [req for req in [*replace.values(), *add] if _OPTION.match(req) or _requirement_name(req) is None]
    if bad_names or bad_strings:
        errors.append(f"{EDITS_VARIABLE} must give requirement names in drop and replace and one requirement"
                      f" string each (no pip options) in replace's values and add; wrong: "
                      f"{', '.join(repr(x) for x in [*bad_names, *bad_strings])} for host {host}.")
    missing = [name for name in dict.fromkeys([*drop, *replace])
               if _VALID_NAME.match(name) and _normalise(name) not in held]
    if missing:
        errors.append(f"{EDITS_VARIABLE} names {', '.join(missing)}, which none of the requirement files {where}"
                      " holds: remove the edit, or fix the name (the release's files may have changed).")
    both = sorted(set(map(_normalise, drop)) & set(map(_normalise, replace)))
    if both:
        errors.append(f"{EDITS_VARIABLE} both drops and replaces {', '.join(both)} for host {host}: keep one.")
    renamed = [f"{name}: {req}" for name, req in replace.items()
               if _requirement_name(req) not in (None, _normalise(name))]
    if renamed:
        errors.append(f"{EDITS_VARIABLE}: a replacement must name the requirement it replaces; wrong:"
                      f" {', '.join(renamed)} for host {host} (drop the old one and add the new one instead).")
    already = [req for req in add if _requirement_name(req) in held]
    if already:
        errors.append(f"{EDITS_VARIABLE} adds {', '.join(already)}, which the requirement files {where} already"
                      " hold: replace it instead.")
    return errors


def requirements_edited(files: dict[str, str], edits: dict[str, Any]) -> str:
    """The edited requirement set, as one file."""
    _defined(files, edits)
    errors = requirement_edit_errors(files, edits, "(this host)")
    if errors:
        raise AnsibleFilterError(" ".join(errors))
    drop, replace, add = _edits(edits)
    dropped = set(map(_normalise, drop))
    replaced = {_normalise(name): req for name, req in replace.items()}
    out = [f"# Written by chatfleet's python_env role: the requirement files below with {EDITS_VARIABLE} applied."]
    for path, text in files.items():
        # The file's name, not its path: a release's directory changes with every release, the set does not.
        out.append(f"# --- {path.rsplit('/', 1)[-1]}")
        for line in text.splitlines():
            name = _requirement_name(line)
            if name in dropped:
                out.append(f"# dropped: {line.strip()}")
            elif name in replaced:
                out.extend([f"# replaced: {line.strip()}", replaced[name]])
            else:
                out.append(line.rstrip())
    if add:
        out.append(f"# --- added by {EDITS_VARIABLE}")
        out.extend(add)
    return "\n".join(out) + "\n"


class FilterModule:
    """Requirement edit filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "requirement_edit_errors": requirement_edit_errors,
            "requirements_edited": requirements_edited,
        }
