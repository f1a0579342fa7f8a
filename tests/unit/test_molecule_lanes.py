"""lab/molecule_lanes.py: scenarios run N at a time in the order given, a failed one stops nothing
else, and the summary at the end of the run names what failed (the tail of a long CI log is all that
is sometimes read)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import molecule_lanes  # noqa: E402

# Each fake scenario is a short Python program standing in for `molecule test`.
SCENARIOS = {
    "roles/passing": "print('1 passed')",
    "roles/failing": ("print('tests/test_x.py::test_a PASSED'); "
                      "print('FAILED tests/test_x.py::test_b - AssertionError: rc 0'); "
                      "print('ERROR    Verifier tests failed'); raise SystemExit(1)"),
    "roles/after_failing": "print('runs all the same')",
    "roles/slow": "import time; time.sleep(1.5); print('slow done')",
    "roles/niceness": "import os; print('niceness', os.nice(0))",
    "roles/niceness_too": "import os; print('niceness', os.nice(0))",
    "roles/ansible_failing": "print(" + repr("\n".join([
        "TASK [milvus : Wait for Milvus to report healthy] ****",
        "FAILED - RETRYING: [node-1]: Wait for Milvus to report healthy (99 retries left).",
        "ok: [node-1]",
        "TASK [chatchat : Probe an optional file] ****",
        'fatal: [node-1]: FAILED! => {"msg": "probe failed"}',
        "...ignoring",
        "TASK [chatchat_services : Enable and start chatchat-api] ****",
        "fatal: [node-1]: FAILED! => changed=true",
        "  rc: 1",
        "  stderr: |-",
        "    Address already in use",
        "",
        "CRITICAL Ansible return code was 2",
    ])) + "); raise SystemExit(2)",
}


@pytest.fixture(autouse=True)
def fake_scenarios(monkeypatch):
    monkeypatch.setattr(molecule_lanes, "scenario_command",
                        lambda scenario: ([sys.executable, "-c", SCENARIOS[scenario]], molecule_lanes.ROOT))


def run(monkeypatch, capsys, *scenarios: str, jobs: int = 2, nice: int = 0) -> tuple[int, str]:
    argv = ["molecule_lanes.py", "--jobs", str(jobs), "--nice", str(nice), *scenarios]
    monkeypatch.setattr(sys, "argv", argv)
    status = molecule_lanes.main()
    return status, capsys.readouterr().out


def test_every_scenario_passing_exits_0_with_no_failure_section(monkeypatch, capsys):
    status, out = run(monkeypatch, capsys, "roles/passing")
    assert status == 0
    assert "[passing] 1 passed" in out and "failed:" not in out


def test_a_failed_scenario_stops_nothing_else_and_the_summary_names_the_failed_test(monkeypatch, capsys):
    status, out = run(monkeypatch, capsys, "roles/failing", "roles/after_failing", "roles/passing", jobs=1)
    assert status == 1
    assert "[after_failing] runs all the same" in out and "[passing] 1 passed" in out
    summary = out[out.index("molecule scenarios (1 at a time"):]
    assert "roles/after_failing" in summary and "not run" not in summary
    assert summary.rstrip().endswith("ERROR    Verifier tests failed")
    assert "roles/failing failed:\n  FAILED tests/test_x.py::test_b - AssertionError: rc 0\n" in summary
    assert "test_a PASSED" not in summary


def test_the_summary_shows_the_failed_task_and_its_result_not_passed_retries_or_ignored_failures(
        monkeypatch, capsys):
    status, out = run(monkeypatch, capsys, "roles/ansible_failing")
    assert status == 1
    summary = out[out.index("roles/ansible_failing failed:"):]
    assert summary.splitlines()[1:] == [
        "  TASK [chatchat_services : Enable and start chatchat-api]",
        "  fatal: [node-1]: FAILED! => changed=true",
        "    rc: 1",
        "    stderr: |-",
        "      Address already in use",
        "  CRITICAL Ansible return code was 2",
    ]


def test_the_next_scenario_takes_the_first_free_slot(monkeypatch, capsys):
    # Two slots: slow starts first; failing and passing run one after the other in the other slot,
    # both before slow ends.
    status, out = run(monkeypatch, capsys, "roles/slow", "roles/failing", "roles/passing")
    assert status == 1
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines.index("[passing] 1 passed") < lines.index("[slow] slow done")


def test_every_scenario_but_the_first_runs_at_the_given_niceness(monkeypatch, capsys):
    base = os.nice(0)
    status, out = run(monkeypatch, capsys, "roles/niceness", "roles/niceness_too", nice=7)
    assert status == 0
    assert f"[niceness] niceness {base}" in out and f"[niceness_too] niceness {base + 7}" in out
