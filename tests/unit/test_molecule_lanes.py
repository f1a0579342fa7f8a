"""lab/molecule_lanes.py: lanes run side by side, a failed scenario stops its lane, and the summary
at the end of the run names what failed (the tail of a long CI log is all that is sometimes read)."""
from __future__ import annotations

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
    "roles/after_failing": "print('should not run')",
    "roles/ansible_failing": "print(" + repr("\n".join([
        "TASK [milvus : Wait for Milvus to report healthy] ****",
        "FAILED - RETRYING: [node-1]: Wait for Milvus to report healthy (99 retries left).",
        "ok: [node-1]",
        "TASK [chatchat : Probe an optional file] ****",
        'fatal: [node-1]: FAILED! => {"msg": "probe failed"}',
        "...ignoring",
        "TASK [chatchat_services : Enable and start chatchat-api] ****",
        'fatal: [node-1]: FAILED! => {"msg": "chatchat-api did not start"}',
        "CRITICAL Ansible return code was 2",
    ])) + "); raise SystemExit(2)",
}


@pytest.fixture(autouse=True)
def fake_scenarios(monkeypatch):
    monkeypatch.setattr(molecule_lanes, "scenario_command",
                        lambda scenario: ([sys.executable, "-c", SCENARIOS[scenario]], molecule_lanes.ROOT))


def run(monkeypatch, capsys, *lanes: str) -> tuple[int, str]:
    argv = ["molecule_lanes.py"] + [arg for lane in lanes for arg in ("--lane", lane)]
    monkeypatch.setattr(sys, "argv", argv)
    status = molecule_lanes.main()
    return status, capsys.readouterr().out


def test_every_scenario_passing_exits_0_with_no_failure_section(monkeypatch, capsys):
    status, out = run(monkeypatch, capsys, "roles/passing")
    assert status == 0
    assert "[passing] 1 passed" in out and "failed:" not in out


def test_a_failed_scenario_stops_its_lane_and_the_summary_names_the_failed_test(monkeypatch, capsys):
    status, out = run(monkeypatch, capsys, "roles/failing roles/after_failing", "roles/passing")
    assert status == 1
    assert "should not run" not in out
    summary = out[out.index("molecule scenarios (lanes side by side)"):]
    assert "roles/after_failing" in summary and "not run" in summary
    assert summary.rstrip().endswith("ERROR    Verifier tests failed")
    assert "roles/failing failed:\n  FAILED tests/test_x.py::test_b - AssertionError: rc 0\n" in summary
    assert "test_a PASSED" not in summary


def test_the_summary_shows_the_failed_task_not_passed_retries_or_ignored_failures(monkeypatch, capsys):
    status, out = run(monkeypatch, capsys, "roles/ansible_failing")
    assert status == 1
    summary = out[out.index("roles/ansible_failing failed:"):]
    assert summary.splitlines()[1:] == [
        "  TASK [chatchat_services : Enable and start chatchat-api]",
        '  fatal: [node-1]: FAILED! => {"msg": "chatchat-api did not start"}',
        "  CRITICAL Ansible return code was 2",
    ]
