"""Checks on a node where prepare installed fschat 0.2.33 into a venv and fschat_patch ran."""
from __future__ import annotations

from fschat_worker import BUGGY, ENV, FIXED, PYTHON, worker_path


def test_affected_fschat_is_installed(host):
    assert host.check_output(f"{ENV}/bin/pip show fschat | sed -n 's/^Version: //p'") == "0.2.33"


def test_fixed_line_present_and_buggy_line_absent(host):
    content = host.file(worker_path(host)).content_string
    assert f"            {FIXED}\n" in content
    assert BUGGY not in content


def test_backup_holds_the_original(host):
    path = worker_path(host)
    backup = host.file(f"{path}.orig-0.2.33")
    assert backup.is_file
    assert f"            {BUGGY}\n" in backup.content_string
    assert FIXED not in backup.content_string
    # The patch changes that one line and nothing else.
    diff = host.run(f"diff {path}.orig-0.2.33 {path}")
    assert diff.rc == 1
    changed = [line for line in diff.stdout.splitlines() if line.startswith(("<", ">"))]
    assert changed == [f"<             {BUGGY}", f">             {FIXED}"]


def test_patched_module_compiles(host):
    assert host.run(f"{PYTHON} -m py_compile {worker_path(host)}").rc == 0
