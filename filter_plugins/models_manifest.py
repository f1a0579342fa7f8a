"""Filters over the model manifest (used by the models role).

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and
RETURN are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.formatters import human_to_bytes

DOCUMENTATION = r"""
models_manifest_errors:
  name: models_manifest_errors
  short_description: Every problem of a model manifest, as sentences naming the entry and the field
  description:
    - Checks each entry (name, repo or url, revision, kind, size, enabled) and the names' uniqueness.
    - An empty list means the manifest is good.
  positional: _input
  options:
    _input: {description: The manifest (models_manifest)., type: list, required: true}
    mirror_url: {description: Base URL of the model repositories (models_mirror_url)., type: str, required: true}
models_plan:
  name: models_plan
  short_description: The enabled entries of a model manifest, normalised for the model_pull module
  description:
    - Drops disabled entries, resolves each entry's clone URL (its own url, else
      mirror_url/repo + repo_suffix) and converts its size to bytes.
  positional: _input
  options:
    _input: {description: The manifest (models_manifest)., type: list, required: true}
    mirror_url: {description: Base URL of the model repositories., type: str, required: true}
    repo_suffix: {description: 'Appended to mirror_url/repo (".git" for git servers, "" for Hugging Face mirrors).', type: str, default: ".git"}
"""

EXAMPLES = r"""
models_manifest_errors: |
  {{ models_manifest | models_manifest_errors(models_mirror_url) }}
models_plan: |
  {{ models_manifest | models_plan(models_mirror_url, '.git') }}
"""

RETURN = r"""
models_manifest_errors:
  _value: {description: One sentence per problem; empty when the manifest is good., type: list, elements: str}
models_plan:
  _value:
    description: One dict per enabled model with name, url, revision, kind and size (bytes).
    type: list
    elements: dict
"""

KINDS = ("llm", "embedding", "tokenizer")
# A model name becomes a directory under MODEL_ROOT_PATH and a key of Chatchat's MODEL_PATH.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
FIELDS = {"name", "repo", "url", "revision", "kind", "size", "enabled"}


def _show(value: Any) -> str:
    """A value as it would be written in the inventory (double quotes survive Ansible's YAML output)."""
    return json.dumps(value, default=str)


def _size_bytes(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a size")
    size = human_to_bytes(value) if isinstance(value, str) else int(value)
    if size <= 0:
        raise ValueError("not positive")
    return size


def _url_error(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.hostname):
        return "is not an http(s):// or file:// URL"
    return None


def models_manifest_errors(manifest: Any, mirror_url: str = "") -> list[str]:
    if not isinstance(manifest, list):
        return ["models_manifest must be a list of models, not %s" % type(manifest).__name__]
    errors, seen = [], set()
    for index, entry in enumerate(manifest):
        where = "models_manifest[%d]" % index
        if not isinstance(entry, dict):
            errors.append("%s must be a mapping with name, repo, revision, kind and size" % where)
            continue
        name = entry.get("name")
        if isinstance(name, str) and NAME_RE.match(name):
            where = "models_manifest entry %s" % _show(name)
            if name in seen:
                errors.append("%s appears twice: model names must be unique" % where)
            seen.add(name)
        else:
            errors.append("%s: name %s must match %s (it becomes a directory and a MODEL_PATH key)"
                          % (where, _show(name), NAME_RE.pattern))
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            errors.append("%s: unknown field(s) %s (allowed: %s)" % (where, ", ".join(unknown), ", ".join(sorted(FIELDS))))
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            errors.append("%s: enabled must be true or false, not %s" % (where, _show(enabled)))
        if entry.get("url"):
            problem = _url_error(str(entry["url"]))
            if problem:
                errors.append("%s: url %s %s" % (where, _show(entry["url"]), problem))
        elif not (isinstance(entry.get("repo"), str) and REPO_RE.match(entry["repo"])):
            errors.append("%s: repo %s must be a path on the mirror like THUDM/chatglm3-6b-32k (or give url)"
                          % (where, _show(entry.get("repo"))))
        elif enabled is True and not mirror_url:
            errors.append("%s: models_mirror_url is empty and the entry has no url" % where)
        revision = entry.get("revision")
        # A disabled entry may wait for its pin: it is checked once it is set or enabled.
        unpinned_and_disabled = enabled is False and revision in ("", None)
        if not unpinned_and_disabled and not (isinstance(revision, str) and REVISION_RE.match(revision)):
            errors.append("%s: revision %s must be the full 40-hex commit to pin (git ls-remote <url> shows it; "
                          "branch and tag names move)" % (where, _show(revision)))
        if entry.get("kind") not in KINDS:
            errors.append("%s: kind %s must be one of %s" % (where, _show(entry.get("kind")), ", ".join(KINDS)))
        try:
            _size_bytes(entry.get("size"))
        except (ValueError, TypeError):
            errors.append("%s: size %s must be a positive size like 12.5G, 400M or a number of bytes"
                          % (where, _show(entry.get("size"))))
    if mirror_url:
        problem = _url_error(mirror_url)
        if problem:
            errors.append("models_mirror_url %s %s" % (_show(mirror_url), problem))
    return errors


def models_plan(manifest: list[dict], mirror_url: str, repo_suffix: str = ".git") -> list[dict]:
    errors = models_manifest_errors(manifest, mirror_url)
    if errors:
        raise AnsibleFilterError("models_plan: " + "; ".join(errors))
    plan = []
    for entry in manifest:
        if not entry.get("enabled", True):
            continue
        url = entry.get("url") or "%s/%s%s" % (mirror_url.rstrip("/"), entry["repo"], repo_suffix)
        plan.append({"name": entry["name"], "url": url, "revision": entry["revision"],
                     "kind": entry["kind"], "size": _size_bytes(entry["size"])})
    return plan


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"models_manifest_errors": models_manifest_errors, "models_plan": models_plan}
