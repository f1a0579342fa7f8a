"""The managed_files action and module (action_plugins/, library/) through real ansible-playbook runs
on this machine: templates rendered as the template module renders them, a converged set reported
unchanged, a changed byte or mode repaired and named, check and diff mode, a failed validation that
leaves the file as it was, and bad input named by its entry."""
from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A template that imports a macro and calls it after reading a variable that needs templating
# itself: the case where a rendering without the template module's overlay environment returned
# the macro's output as a Python literal (['a'] in place of ["a"]).
MACRO = """{% macro py(value) -%}
{%- if value is string -%}{{ value | to_json }}
{%- else -%}[{% for item in value %}{{ py(item) }}{{ ', ' if not loop.last else '' }}{% endfor %}]
{%- endif -%}
{%- endmacro %}
"""
TEMPLATE = """{% from '_macro.j2' import py %}
name = {{ py(templated_name) }}
items = {{ py(items) }}
extra = {{ extra }}
"""


@pytest.fixture
def project(tmp_path):
    role = tmp_path / "roles" / "files_role"
    (role / "templates").mkdir(parents=True)
    (role / "files").mkdir()
    (role / "tasks").mkdir()
    (role / "templates" / "_macro.j2").write_text(MACRO)
    (role / "templates" / "settings.py.j2").write_text(TEMPLATE)
    (role / "files" / "helper.sh").write_text("#!/bin/sh\necho helper\n")
    (role / "tasks" / "main.yml").write_text("""---
- name: Write the files
  managed_files:
    owner: "{{ owner }}"
    group: "{{ group }}"
    mode: "0640"
    directories:
      - {path: "{{ out }}/conf.d", mode: "0750"}
    files:
      - {dest: "{{ out }}/conf.d/extra.conf", content: "extra\\n"}
      - {dest: "{{ out }}/settings.py", template: settings.py.j2, vars: {extra: 7}, validate: "{{ python }} -m py_compile %s"}
      - {dest: "{{ out }}/helper.sh", src: helper.sh, mode: "0755"}
      - {dest: "{{ out }}/secret.conf", content: "password={{ secret }}\\n", mode: "0600", diff: false}
  register: written

- name: Keep the result
  ansible.builtin.copy:
    content: "{{ written | to_json }}"
    dest: "{{ result_file }}"
    mode: "0644"
  check_mode: false
  diff: false
""")
    (tmp_path / "play.yml").write_text("""---
- name: Files
  hosts: localhost
  gather_facts: false
  vars:
    base_name: chat
    templated_name: "{{ base_name }}-api"
    items: [a, b]
  roles: [files_role]
""")
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path


def _play(project: Path, *extra: str, secret: str = "s3cret", check: bool = True):
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    variables = {"out": str(project / "out"), "owner": user, "group": group, "secret": secret,
                 "python": sys.executable, "result_file": str(project / "result.json"),
                 "ansible_python_interpreter": sys.executable}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(project / "roles"),
               ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "molecule" / "shared" / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="failed_tasks", CHATFLEET_FAILED_TASKS_FILE=str(project / "failed.jsonl"))
    for name in ("result.json", "failed.jsonl"):
        (project / name).unlink(missing_ok=True)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", json.dumps(variables), *extra, str(project / "play.yml")],
        cwd=project, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads((project / "result.json").read_text()) if (project / "result.json").exists() else None
    return done, result


def _failed_messages(project: Path) -> list[str]:
    """The message of each failed task (molecule/shared/callback_plugins/failed_tasks.py)."""
    lines = (project / "failed.jsonl").read_text().splitlines() if (project / "failed.jsonl").exists() else []
    return [json.loads(line)["msg"] for line in lines]


def test_renders_writes_then_reports_a_converged_set_unchanged(project):
    _, first = _play(project)
    out = project / "out"
    assert first["changed"] is True
    assert sorted(first["changed_files"]) == sorted(str(out / name) for name in
                                                    ("conf.d", "conf.d/extra.conf", "settings.py", "helper.sh", "secret.conf"))
    assert stat.S_IMODE((out / "conf.d").stat().st_mode) == 0o750 and (out / "conf.d" / "extra.conf").read_text() == "extra\n"
    assert (out / "settings.py").read_text() == 'name = "chat-api"\nitems = ["a", "b"]\nextra = 7\n'
    assert (out / "helper.sh").read_text() == "#!/bin/sh\necho helper\n"
    assert stat.S_IMODE((out / "helper.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "secret.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "settings.py").stat().st_mode) == 0o640
    assert not [path for path in out.iterdir() if path.name.startswith(".managed-")]

    _, second = _play(project)
    assert second["changed"] is False and second["changed_files"] == []
    assert [entry["changed"] for entry in second["files"] + second["directories"]] == [[], [], [], [], []]


def test_repairs_a_changed_byte_and_a_changed_mode_and_names_them(project):
    _play(project)
    out = project / "out"
    (out / "helper.sh").write_text("#!/bin/sh\necho helpeR\n")
    (out / "settings.py").chmod(0o644)
    (out / "conf.d").chmod(0o755)
    _, repaired = _play(project)
    assert {entry["dest"]: entry["changed"] for entry in repaired["files"]} == {
        str(out / "conf.d/extra.conf"): [], str(out / "settings.py"): ["mode"], str(out / "helper.sh"): ["content"],
        str(out / "secret.conf"): []}
    assert repaired["directories"] == [{"path": str(out / "conf.d"), "changed": ["mode"]}]
    assert stat.S_IMODE((out / "conf.d").stat().st_mode) == 0o750
    assert (out / "helper.sh").read_text() == "#!/bin/sh\necho helper\n"
    assert stat.S_IMODE((out / "settings.py").stat().st_mode) == 0o640


def test_check_mode_reports_and_writes_nothing_and_diff_hides_secrets(project):
    _play(project)
    out = project / "out"
    (out / "helper.sh").write_text("drifted\n")
    done, checked = _play(project, "--check", "--diff", secret="n3w")
    assert checked["changed_files"] == [str(out / "helper.sh"), str(out / "secret.conf")]
    assert (out / "helper.sh").read_text() == "drifted\n"
    assert (out / "secret.conf").read_text() == "password=s3cret\n"
    assert [entry["after_header"] for entry in checked["diff"]] == [str(out / "helper.sh")]
    assert "n3w" not in done.stdout and "s3cret" not in done.stdout


def test_check_mode_reports_a_missing_directory_and_makes_nothing(project):
    _, checked = _play(project, "--check")
    out = project / "out"
    assert checked["directories"] == [{"path": str(out / "conf.d"), "changed": ["created"]}]
    assert list(out.iterdir()) == []


def test_a_failed_validation_leaves_the_file_as_it_was_and_names_it(project):
    _play(project)
    out = project / "out"
    template = project / "roles" / "files_role" / "templates" / "settings.py.j2"
    template.write_text(TEMPLATE + "def broken(:\n")
    done, _ = _play(project, check=False)
    assert done.returncode != 0
    failed = _failed_messages(project)
    assert len(failed) == 1 and failed[0].startswith(f"{out / 'settings.py'}: the new content failed validation")
    assert (out / "settings.py").read_text() == 'name = "chat-api"\nitems = ["a", "b"]\nextra = 7\n'
    assert not [path for path in out.iterdir() if path.name.startswith(".managed-")]


def test_an_entry_without_a_source_is_named(project):
    tasks = project / "roles" / "files_role" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text().replace("src: helper.sh, ", ""))
    done, _ = _play(project, check=False)
    assert done.returncode != 0
    failed = _failed_messages(project)
    assert len(failed) == 1
    assert failed[0].startswith(f"managed_files: files[2] ({project / 'out' / 'helper.sh'}) needs exactly one of")
