"""The proof report: the pytest plugin's records (a real pytest run of marked tests) and
lab/proof_report.py's sums and minimums over them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKED_TESTS = '''
import pytest

@pytest.mark.bad_input
@pytest.mark.parametrize("value", ["", "x"])
def test_bad(value):
    assert value != "never"

@pytest.mark.fault
def test_fault_that_fails():
    assert False

@pytest.mark.security
@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

def test_unmarked():
    pass
'''


def run_plugin(tmp_path: Path, scenario: str) -> dict:
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "tests" / "test_marked.py").write_text(MARKED_TESTS)
    env = dict(os.environ, CHATFLEET_ROOT=str(tmp_path), PYTHONPATH=str(ROOT / "molecule" / "shared"),
               MOLECULE_SCENARIO_NAME=scenario, MOLECULE_PROJECT_DIRECTORY=str(tmp_path / "roles" / "demo"),
               PYTEST_ADDOPTS="")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "proofreport", "-p", "no:cacheprovider",
                    "-W", "error::pytest.PytestUnknownMarkWarning", "tests"],
                   cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    name = "role-demo" if scenario == "default" else scenario
    return json.loads((tmp_path / "artifacts" / "proof" / f"{name}.json").read_text())


def report(tmp_path: Path, *minimums: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "lab" / "proof_report.py"),
                           "--records", str(tmp_path / "artifacts" / "proof"), *minimums],
                          capture_output=True, text=True, check=False)


def test_the_plugin_records_each_marked_test_and_how_it_ended(tmp_path):
    record = run_plugin(tmp_path, "default")
    assert record["suite"] == "role-demo"
    outcomes = {nodeid.split("::")[1]: (r["categories"], r["outcome"]) for nodeid, r in record["tests"].items()}
    assert outcomes == {
        "test_bad[]": (["bad_input"], "passed"),
        "test_bad[x]": (["bad_input"], "passed"),
        "test_fault_that_fails": (["fault"], "failed"),
        "test_skipped": (["security"], "skipped"),
    }


def test_the_report_counts_per_category_and_fails_on_a_test_that_did_not_pass(tmp_path):
    run_plugin(tmp_path, "site")
    result = report(tmp_path)
    assert result.returncode == 1
    assert "| Bad input | 2 | 2 | 0 |" in result.stdout
    assert "| Faults | 0 | 0 | 1 |" in result.stdout
    assert "Faults: site tests/test_marked.py::test_fault_that_fails failed" in result.stdout
    assert "test_skipped" in (tmp_path / "artifacts" / "proof" / "REPORT.md").read_text()


@pytest.mark.parametrize(("minimum", "code"), [("bad_input=2", 0), ("bad_input=3", 1)])
def test_a_category_below_its_minimum_fails_the_report(tmp_path, minimum, code):
    records = tmp_path / "artifacts" / "proof"
    records.mkdir(parents=True)
    (records / "site.json").write_text(json.dumps({"suite": "site", "tests": {
        "t.py::a": {"categories": ["bad_input"], "outcome": "passed"},
        "t.py::b": {"categories": ["bad_input", "fault"], "outcome": "passed"}}}))
    result = report(tmp_path, "--min", minimum, "--min", "fault=1")
    assert result.returncode == code, result.stdout
    if code:
        assert "Bad input: 2 passed, at least 3 wanted" in result.stdout


def test_no_records_is_a_failure_not_an_empty_pass(tmp_path):
    (tmp_path / "artifacts" / "proof").mkdir(parents=True)
    result = report(tmp_path)
    assert result.returncode == 1 and "no records" in result.stdout


def test_tests_deselected_with_k_are_not_recorded(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_marked.py").write_text(MARKED_TESTS)
    env = dict(os.environ, CHATFLEET_ROOT=str(tmp_path), PYTHONPATH=str(ROOT / "molecule" / "shared"),
               MOLECULE_SCENARIO_NAME="site", PYTEST_ADDOPTS="")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "proofreport", "-p", "no:cacheprovider", "-k", "bad",
                    "tests"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    record = json.loads((tmp_path / "artifacts" / "proof" / "site.json").read_text())
    assert sorted(nodeid.split("::")[1] for nodeid in record["tests"]) == ["test_bad[]", "test_bad[x]"]


def test_a_skipped_test_is_not_a_failure(tmp_path):
    records = tmp_path / "artifacts" / "proof"
    records.mkdir(parents=True)
    (records / "site.json").write_text(json.dumps({"suite": "site", "tests": {
        "t.py::a[cache]": {"categories": ["security"], "outcome": "passed"},
        "t.py::a[node]": {"categories": ["security"], "outcome": "skipped"},
        "t.py::b": {"categories": ["fault"], "outcome": "not run"}}}))
    result = report(tmp_path, "--min", "security=1")
    assert result.returncode == 1
    assert "| Security | 1 | 1 | 1 |" in result.stdout
    assert "a[node]" not in result.stdout.split("REPORT.md")[-1]  # the skip is no problem line
    assert "Faults: site t.py::b not run" in result.stdout
