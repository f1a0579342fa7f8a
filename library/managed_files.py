#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Write several small files in one module call; the managed_files action renders them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: managed_files
short_description: Keep several files at a given content, owner, group and mode in one module call
description:
  - The module side of the C(managed_files) action (action_plugins/managed_files.py), which renders
    templates and reads role files on the controller and sends every file's content at once. On a
    converged host this is one module call for all the files, where C(template) and C(copy) make two
    per file.
  - A file whose content differs is written to a temporary directory beside it under its own name
    (so that C(systemd-analyze verify) sees a unit name), validated, then moved into place in one
    rename; owner, group and mode are set on the file either way.
  - Directories listed in C(directories) are made (and their owner, group and mode set) first, in
    the same call.
  - Check mode and diff mode are supported.
options:
  directories:
    description: Directories to make (with their parents, as the file module does) before the files are written.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path of the directory., type: path, required: true}
      owner: {description: Owner of the directory., type: str, default: root}
      group: {description: Group of the directory., type: str, default: root}
      mode: {description: Mode of the directory (octal string)., type: str, default: "0755"}
  files:
    description: The files, each with its content base64-encoded.
    type: list
    elements: dict
    default: []
    suboptions:
      dest: {description: Absolute path of the file., type: path, required: true}
      content_b64: {description: The file's content, base64-encoded., type: str, required: true}
      owner: {description: Owner of the file., type: str, default: root}
      group: {description: Group of the file., type: str, default: root}
      mode: {description: Mode of the file (octal string)., type: str, default: "0644"}
      validate: {description: "Command run on the new content before it is moved into place; %s is its path.", type: str}
      diff: {description: Show the content in diff mode (false for files that hold secrets)., type: bool, default: true}
"""

RETURN = r"""
directories:
  description: Per directory, in the order given, its path and what was changed (created, owner, group, mode).
  type: list
files:
  description: Per file, in the order given, its path and what was changed (content, owner, group, mode).
  type: list
changed_files: {description: The paths of the files and directories that changed., type: list}
"""

import base64
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

DIFF_MAX_BYTES = 128 * 1024


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _text_for_diff(data):
    if data is None:
        return ""
    if len(data) > DIFF_MAX_BYTES:
        return "[%d bytes, not shown]\n" % len(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "[binary, %d bytes]\n" % len(data)


def _write(module, spec, content):
    """Write content beside dest under dest's own name, validate it, then rename it over dest."""
    dest = spec["dest"]
    workdir = tempfile.mkdtemp(prefix=".managed-", dir=os.path.dirname(dest))
    try:
        staged = os.path.join(workdir, os.path.basename(dest))
        with open(staged, "wb") as handle:
            handle.write(content)
        if spec.get("validate"):
            command = spec["validate"]
            if "%s" not in command:
                module.fail_json(msg="validate for %s must contain %%s (the new file's path): %s" % (dest, command))
            rc, out, err = module.run_command(command % staged)
            if rc != 0:
                module.fail_json(msg="%s: the new content failed validation (%s): %s"
                                 % (dest, command, (err or out).strip()), rc=rc)
        module.atomic_move(staged, dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _attributes(module, path, spec, what):
    """Set owner, group and mode where they differ (reported in check mode); append what changed."""
    attributes = {"path": path, "owner": spec["owner"], "group": spec["group"], "mode": spec["mode"]}
    for name, setter in (("owner", module.set_owner_if_different), ("group", module.set_group_if_different),
                         ("mode", module.set_mode_if_different)):
        if setter(path, attributes[name], False):
            what.append(name)


def _directory(module, spec):
    path, what = spec["path"], []
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        module.fail_json(msg="%s exists and is not a directory (a link or a file): move it away" % path)
    if not os.path.isdir(path):
        what.append("created")
        if module.check_mode:
            return {"path": path, "changed": what}
        os.makedirs(path, int(spec["mode"], 8))  # parents as the file module makes them
    _attributes(module, path, spec, what)
    return {"path": path, "changed": what}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(
                type="list", elements="dict", default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    owner=dict(type="str", default="root"),
                    group=dict(type="str", default="root"),
                    mode=dict(type="str", default="0755"),
                ),
            ),
            files=dict(
                type="list", elements="dict", default=[],
                options=dict(
                    dest=dict(type="path", required=True),
                    content_b64=dict(type="str", required=True, no_log=True),
                    owner=dict(type="str", default="root"),
                    group=dict(type="str", default="root"),
                    mode=dict(type="str", default="0644"),
                    validate=dict(type="str"),
                    diff=dict(type="bool", default=True),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    directories = [_directory(module, spec) for spec in module.params["directories"]]
    results, diffs = [], []
    for spec in module.params["files"]:
        dest = spec["dest"]
        content = base64.b64decode(spec["content_b64"])
        if os.path.isdir(dest):
            module.fail_json(msg="%s is a directory; a file was expected there" % dest)
        current = None if os.path.islink(dest) else _read(dest)
        what = []
        if current != content:
            what.append("content" if os.path.lexists(dest) else "created")
            if module._diff and spec["diff"]:
                diffs.append({"before_header": dest, "after_header": dest,
                              "before": _text_for_diff(current), "after": _text_for_diff(content)})
            if not module.check_mode:
                _write(module, spec, content)
        if module.check_mode and what:
            # The new file would get the owner, group and mode given; nothing to compare.
            results.append({"dest": dest, "changed": what})
            continue
        _attributes(module, dest, spec, what)
        results.append({"dest": dest, "changed": what})
    changed_files = ([entry["path"] for entry in directories if entry["changed"]]
                     + [entry["dest"] for entry in results if entry["changed"]])
    outcome = {"changed": bool(changed_files), "directories": directories, "files": results,
               "changed_files": changed_files}
    if diffs:
        outcome["diff"] = diffs
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
