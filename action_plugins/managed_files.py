# -*- coding: utf-8 -*-
"""Render several templates and role files on the controller and write them in one module call.

A converged host costs one module call for the whole set, where a template or copy task costs two
per file (a stat, then the attributes); the roles' no-op runs are mostly such tasks.

    - name: Install the units
      managed_files:
        owner: root            # defaults for every file and directory
        group: root
        mode: "0644"           # for the files (directories: 0755 unless they say)
        directories:           # made first, in order
          - {path: /usr/local/libexec/chatchat}
        files:
          - dest: /etc/systemd/system/chatchat.target
            template: chatchat.target.j2        # from the role's templates/
            validate: systemd-analyze verify %s
          - dest: /usr/local/libexec/chatchat/chatchat-wait
            src: chatchat-wait.py               # from the role's files/
            mode: "0755"
          - dest: /etc/chatchat/services.json
            content: "{{ record | to_nice_json }}\n"
          - dest: /etc/systemd/system/chatchat-api.service
            template: chatchat.service.j2
            vars: {unit: "{{ api_unit }}"}      # extra variables for this template only
            diff: false                         # not shown in diff mode (secrets)

The result has `changed_files` (the paths made, written or whose owner, group or mode was set),
`directories` and `files` (per entry: its path and what changed), for the tasks that act on a
particular file's change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase
from ansible.template import AnsibleEnvironment, generate_ansible_template_vars

SOURCES = ("template", "src", "content")
TEMPLATE_MODULE_DEFAULTS = dict(
    block_start_string="{%", block_end_string="%}", variable_start_string="{{", variable_end_string="}}",
    comment_start_string="{#", comment_end_string="#}", trim_blocks=True, lstrip_blocks=False)
ENTRY_KEYS = frozenset(SOURCES + ("dest", "owner", "group", "mode", "validate", "vars", "diff"))


def _octal_mode(spec):
    """The mode as the module's octal string: an unquoted 0644 in YAML arrives as the integer 420."""
    if isinstance(spec.get("mode"), int):
        spec["mode"] = "0%o" % spec["mode"]
    return spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("directories", "files", "owner", "group", "mode"))

    def _render(self, source, dest, extra_vars, task_vars):
        """The template action's rendering: the role's search path, the template vars, then extra_vars."""
        path = self._find_needle("templates", source)
        real = self._loader.get_real_file(path)
        try:
            with open(to_bytes(real, errors="surrogate_or_strict"), "rb") as handle:
                data = to_text(handle.read(), errors="surrogate_or_strict")
        finally:
            self._loader.cleanup_tmp_file(real)
        searchpath = list(task_vars.get("ansible_search_path", [])) + [self._loader._basedir, os.path.dirname(path)]
        searchpath = [entry for base in searchpath for entry in (os.path.join(base, "templates"), base)]
        variables = task_vars.copy()
        variables.update(generate_ansible_template_vars(source, path, dest))
        variables.update(extra_vars)
        templar = self._templar.copy_with_new_env(environment_class=AnsibleEnvironment, searchpath=searchpath,
                                                  available_variables=variables)
        # Overrides (the template module's defaults) render in an overlay environment of its own: without
        # one, a variable templated on the way (a "{{ }}" default) resets the environment's output
        # conversion, and macros called after it return Python literals (a list rendered as its repr).
        return templar.do_template(data, preserve_trailing_newlines=True, escape_backslashes=False,
                                   overrides=TEMPLATE_MODULE_DEFAULTS)

    def _content(self, entry, task_vars):
        if "template" in entry:
            return to_bytes(self._render(entry["template"], entry["dest"], entry.get("vars") or {}, task_vars))
        if "src" in entry:
            path = self._loader.get_real_file(self._find_needle("files", entry["src"]))
            try:
                with open(to_bytes(path, errors="surrogate_or_strict"), "rb") as handle:
                    return handle.read()
            finally:
                self._loader.cleanup_tmp_file(path)
        return to_bytes(entry["content"], errors="surrogate_or_strict")

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._task.args
        files = args.get("files") or []
        directories = args.get("directories") or []
        if not isinstance(files, list) or not isinstance(directories, list) or not (files or directories):
            raise AnsibleActionFail("managed_files: give a list of files or of directories, got files=%r directories=%r"
                                    % (files, directories))
        defaults = {key: args[key] for key in ("owner", "group", "mode") if args.get(key) is not None}
        module_directories = []
        for index, entry in enumerate(directories):
            if not isinstance(entry, dict) or not entry.get("path") or set(entry) - {"path", "owner", "group", "mode"}:
                raise AnsibleActionFail("managed_files: directories[%d] needs a path and takes owner, group and mode "
                                        "only, got %r" % (index, entry))
            spec = {key: defaults[key] for key in ("owner", "group") if key in defaults}
            spec.update(entry)
            module_directories.append(_octal_mode(spec))
        module_files = []
        for index, entry in enumerate(files):
            where = "managed_files: files[%d]" % index
            if not isinstance(entry, dict) or not entry.get("dest"):
                raise AnsibleActionFail("%s needs a dest (an absolute path), got %r" % (where, entry))
            where = "%s (%s)" % (where, entry["dest"])
            unknown = sorted(set(entry) - ENTRY_KEYS)
            if unknown:
                raise AnsibleActionFail("%s: unknown keys %s; allowed: %s" % (where, unknown, sorted(ENTRY_KEYS)))
            given = [key for key in SOURCES if key in entry]
            if len(given) != 1:
                raise AnsibleActionFail("%s needs exactly one of %s, got %s" % (where, list(SOURCES), given))
            try:
                content = self._content(entry, task_vars)
            except AnsibleError as error:
                raise AnsibleActionFail("%s: %s" % (where, to_text(error)))
            spec = dict(defaults, dest=entry["dest"], content_b64=to_text(base64.b64encode(content)))
            spec.update({key: entry[key] for key in ("owner", "group", "mode", "validate", "diff") if key in entry})
            module_files.append(_octal_mode(spec))
        result.update(self._execute_module(module_name=self._task.action,
                                           module_args={"directories": module_directories, "files": module_files},
                                           task_vars=task_vars))
        return result
