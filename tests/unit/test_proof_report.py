"""The proof report: the pytest plugin's records (molecule/shared/proofreport.py, run on small
suites with pytester) and lab/proof_report.py's counts of test functions, problems and minimums."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "lab" / "proof_report.py"

# Like testinfra: every test that asks for `host` runs once per host, with the host's id in
# brackets (`test_x[ansible://node1-a]`).
HOSTS_CONFTEST = '''
import pytest

@pytest.fixture
def host(request):
    return request.param

def pytest_generate_tests(metafunc):
    if "host" in metafunc.fixturenames:
        hosts = ["node1", "node2"]
        metafunc.parametrize("host", hosts, ids=[f"ansible://{h}" for h in hosts], indirect=True, scope="module")
'''

MARKED_TESTS = '''
import pytest

@pytest.mark.bad_input
@pytest.mark.parametrize("value", ["", "x", "y"])
def test_bad(host, value):
    assert value != "never"

@pytest.mark.bad_input
@pytest.mark.parametrize("value", ["a", "b"])
def test_bad_one_host_fails(host, value):
    assert not (host == "node2" and value == "b")

@pytest.mark.security
def test_cache_only(host):
    if host != "node1":
        pytest.skip("not a cache node")

@pytest.mark.security
@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

@pytest.mark.fault
def test_fault_that_fails():
    assert False

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

@pytest.mark.fault
def test_setup_error(broken):
    pass

@pytest.mark.idempotence
@pytest.mark.xfail(reason="known bug 7")
def test_expected_failure():
    assert False

@pytest.mark.idempotence
@pytest.mark.xfail(reason="was a bug")
def test_unexpected_pass():
    pass

@pytest.mark.check_mode
@pytest.mark.xfail(reason="strict bug", strict=True)
def test_strict_unexpected_pass():
    pass

@pytest.mark.check_mode
class TestCheck:
    def test_in_class(self, host):
        pass

def test_unmarked():
    pass
'''


@pytest.fixture
def proof_env(pytester, monkeypatch):
    """pytester with the plugin importable and its records written under pytester's directory."""
    monkeypatch.syspath_prepend(str(ROOT / "molecule" / "shared"))
    monkeypatch.setenv("CHATFLEET_ROOT", str(pytester.path))
    monkeypatch.setenv("MOLECULE_SCENARIO_NAME", "site")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makeconftest(HOSTS_CONFTEST)
    return pytester


def run_suite(pytester, *args: str, **files: str):
    pytester.makepyfile(**files)
    return pytester.runpytest("-p", "proofreport", "-p", "no:cacheprovider",
                              "-W", "error::pytest.PytestUnknownMarkWarning", *args)


def records(pytester, suite: str = "site") -> dict:
    return json.loads((pytester.path / "artifacts" / "proof" / f"{suite}.json").read_text())


def report(records_dir: Path, *minimums: str) -> subprocess.CompletedProcess:
    # -I -S: no site-packages, as the system python3 of `make test` runs it (stdlib only).
    return subprocess.run([sys.executable, "-I", "-S", str(REPORT), "--records", str(records_dir), *minimums],
                          capture_output=True, text=True, check=False)


def write_records(tmp_path: Path, tests: dict, suite: str = "site", **extra) -> Path:
    records_dir = tmp_path / "artifacts" / "proof"
    records_dir.mkdir(parents=True, exist_ok=True)
    (records_dir / f"{suite}.json").write_text(json.dumps({"suite": suite, "tests": tests, **extra}))
    return records_dir


def item(function: str, category: str, outcome: str) -> dict:
    return {"function": function, "category": category, "outcome": outcome, "reason": ""}


# --- the plugin -------------------------------------------------------------------------------

def test_the_plugin_records_each_item_with_its_function_category_and_outcome(proof_env):
    run_suite(proof_env, test_marked=MARKED_TESTS)
    data = records(proof_env)
    assert data["suite"] == "site" and data["errors"] == []
    got = {nodeid: (r["function"], r["category"], r["outcome"]) for nodeid, r in data["tests"].items()}
    f = "test_marked.py::"
    assert got == {
        **{f"{f}test_bad[ansible://{h}-{v}]": (f"{f}test_bad", "bad_input", "passed")
           for h in ("node1", "node2") for v in ("", "x", "y")},
        f"{f}test_bad_one_host_fails[ansible://node1-a]": (f"{f}test_bad_one_host_fails", "bad_input", "passed"),
        f"{f}test_bad_one_host_fails[ansible://node1-b]": (f"{f}test_bad_one_host_fails", "bad_input", "passed"),
        f"{f}test_bad_one_host_fails[ansible://node2-a]": (f"{f}test_bad_one_host_fails", "bad_input", "passed"),
        f"{f}test_bad_one_host_fails[ansible://node2-b]": (f"{f}test_bad_one_host_fails", "bad_input", "failed"),
        f"{f}test_cache_only[ansible://node1]": (f"{f}test_cache_only", "security", "passed"),
        f"{f}test_cache_only[ansible://node2]": (f"{f}test_cache_only", "security", "skipped"),
        f"{f}test_skipped": (f"{f}test_skipped", "security", "skipped"),
        f"{f}test_fault_that_fails": (f"{f}test_fault_that_fails", "fault", "failed"),
        f"{f}test_setup_error": (f"{f}test_setup_error", "fault", "failed"),
        f"{f}test_expected_failure": (f"{f}test_expected_failure", "idempotence", "xfailed"),
        f"{f}test_unexpected_pass": (f"{f}test_unexpected_pass", "idempotence", "xpassed"),
        f"{f}test_strict_unexpected_pass": (f"{f}test_strict_unexpected_pass", "check_mode", "xpassed"),
        f"{f}TestCheck::test_in_class[ansible://node1]": (f"{f}TestCheck::test_in_class", "check_mode", "passed"),
        f"{f}TestCheck::test_in_class[ansible://node2]": (f"{f}TestCheck::test_in_class", "check_mode", "passed"),
    }
    reasons = {nodeid.split("::")[-1]: r["reason"] for nodeid, r in data["tests"].items() if r["reason"]}
    assert reasons == {"test_cache_only[ansible://node2]": "not a cache node", "test_skipped": "not here",
                       "test_expected_failure": "known bug 7", "test_unexpected_pass": "was a bug",
                       "test_strict_unexpected_pass": "strict bug"}


def test_the_suite_of_a_default_scenario_is_named_after_its_role(proof_env, monkeypatch):
    monkeypatch.setenv("MOLECULE_SCENARIO_NAME", "default")
    monkeypatch.setenv("MOLECULE_PROJECT_DIRECTORY", str(proof_env.path / "roles" / "demo"))
    run_suite(proof_env, test_marked=MARKED_TESTS)
    assert records(proof_env, "role-demo")["suite"] == "role-demo"


def test_tests_deselected_with_k_are_not_recorded(proof_env):
    run_suite(proof_env, "-k", "test_bad and not one_host", test_marked=MARKED_TESTS)
    assert {r["function"] for r in records(proof_env)["tests"].values()} == {"test_marked.py::test_bad"}


def test_collect_only_writes_no_record(proof_env):
    run_suite(proof_env, "--collect-only", test_marked=MARKED_TESTS)
    assert not (proof_env.path / "artifacts" / "proof").exists()


@pytest.mark.parametrize("marks", [
    "@pytest.mark.bad_input\n@pytest.mark.fault\ndef test_two(host):\n    pass\n",
    "@pytest.mark.security\nclass TestTwo:\n    @pytest.mark.idempotence\n    def test_two(self):\n        pass\n",
], ids=["function", "class-and-method"])
def test_two_proof_markers_stop_the_session_at_collection_naming_the_test(proof_env, marks):
    source = "import pytest\n\n@pytest.mark.fault\ndef test_fine():\n    pass\n\n" + marks
    # -k: the error does not depend on the test being selected
    result = run_suite(proof_env, "-k", "fine", test_double=source)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = "test_double.py::test_two" if "def test_two(host)" in marks else "test_double.py::TestTwo::test_two"
    result.stderr.fnmatch_lines([f"*proofreport: {name} carries 2 proof markers (*): a test proves exactly one*"])
    result.stdout.no_fnmatch_line("*passed*")  # nothing ran
    assert records(proof_env)["errors"] and records(proof_env)["tests"] == {}


def test_one_marker_repeated_on_class_and_method_is_one_category(proof_env):
    source = ("import pytest\n\n@pytest.mark.security\nclass TestOne:\n"
              "    @pytest.mark.security\n    def test_one(self):\n        pass\n")
    run_suite(proof_env, test_one=source).assert_outcomes(passed=1)
    assert [r["category"] for r in records(proof_env)["tests"].values()] == ["security"]


# --- the report -------------------------------------------------------------------------------

def test_the_report_counts_functions_with_their_items_and_lists_every_function(proof_env):
    run_suite(proof_env, test_marked=MARKED_TESTS)
    result = report(proof_env.path / "artifacts" / "proof")
    assert result.returncode == 1
    out = result.stdout
    assert "| category: functions (items) | site | passed | not passed |" in out
    assert "Figures are test functions; in brackets, the pytest items" in out
    # test_bad: 1 function of 6 items passed; test_bad_one_host_fails (4 items) failed on one
    assert "| Bad input | 1 (6) | 1 (6) | 1 (4) |" in out
    assert "| Security | 1 (2) | 1 (2) | 1 (1) |" in out  # the all-skipped function did not pass
    assert "| Faults | 0 (0) | 0 (0) | 2 (2) |" in out
    assert "| Idempotence | 0 (0) | 0 (0) | 2 (2) |" in out
    assert "| Check mode | 1 (2) | 1 (2) | 1 (1) |" in out
    problems = [line for line in out.splitlines() if line.startswith("proof report: ")]
    assert problems == [
        "proof report: Bad input: site test_marked.py::test_bad_one_host_fails failed "
        "(4 items: 1 failed, 3 passed; not passing: test_bad_one_host_fails[ansible://node2-b])",
        "proof report: Faults: site test_marked.py::test_fault_that_fails failed (1 item; not passing: "
        "test_fault_that_fails)",
        "proof report: Faults: site test_marked.py::test_setup_error failed (1 item; not passing: test_setup_error)",
        "proof report: Idempotence: site test_marked.py::test_expected_failure xfailed (1 item; not passing: "
        "test_expected_failure)",
        "proof report: Idempotence: site test_marked.py::test_unexpected_pass xpassed (1 item; not passing: "
        "test_unexpected_pass)",
        "proof report: Check mode: site test_marked.py::test_strict_unexpected_pass xpassed (1 item; not passing: "
        "test_strict_unexpected_pass)",
    ]
    md = (proof_env.path / "artifacts" / "proof" / "REPORT.md").read_text()
    assert "## Bad input: 1 of 2 functions passed (10 items)" in md
    assert "- `site` test_marked.py::test_bad: passed (6 items)" in md
    assert "- `site` test_marked.py::test_bad_one_host_fails: failed (4 items: 1 failed, 3 passed)" in md
    assert "  - test_bad_one_host_fails[ansible://node2-b]: failed" in md
    assert "- `site` test_marked.py::test_cache_only: passed (2 items: 1 passed, 1 skipped)" in md
    assert "- `site` test_marked.py::test_skipped: skipped (1 item)" in md
    assert "- `site` test_marked.py::TestCheck::test_in_class: passed (2 items)" in md
    assert "- `site` test_marked.py::test_expected_failure: xfailed (1 item)" in md
    assert "Figures are test functions" in md


@pytest.mark.parametrize(("minimum", "code"), [("bad_input=2", 0), ("bad_input=3", 1)])
def test_minimums_count_passed_functions_not_items(tmp_path, minimum, code):
    records_dir = write_records(tmp_path, {
        **{f"t.py::a[ansible://n{i}-{v}]": item("t.py::a", "bad_input", "passed") for i in (1, 2) for v in "xyz"},
        "t.py::b[ansible://n1]": item("t.py::b", "bad_input", "passed"),
        "t.py::c": item("t.py::c", "fault", "passed")})
    result = report(records_dir, "--min", minimum, "--min", "fault=1")
    assert result.returncode == code, result.stdout
    assert "| Bad input | 2 (7) | 2 (7) | 0 (0) |" in result.stdout
    if code:
        assert "proof report: Bad input: 2 functions passed, at least 3 wanted" in result.stdout


def test_functions_count_once_per_scenario_across_suites(tmp_path):
    write_records(tmp_path, {"t.py::a[ansible://n1]": item("t.py::a", "security", "passed")}, suite="role-x")
    records_dir = write_records(tmp_path, {"t.py::a[ansible://n1]": item("t.py::a", "security", "passed"),
                                           "t.py::a[ansible://n2]": item("t.py::a", "security", "passed")})
    result = report(records_dir, "--min", "security=2")
    assert result.returncode == 0, result.stdout
    assert "| Security | 1 (1) | 1 (2) | 2 (3) | 0 (0) |" in result.stdout


def test_a_skip_beside_a_pass_is_fine_an_unrun_item_is_not(tmp_path):
    records_dir = write_records(tmp_path, {
        "t.py::a[cache]": item("t.py::a", "security", "passed"),
        "t.py::a[node]": item("t.py::a", "security", "skipped"),
        "t.py::b[n1]": item("t.py::b", "fault", "passed"),
        "t.py::b[n2]": item("t.py::b", "fault", "not run")})
    result = report(records_dir, "--min", "security=1")
    assert result.returncode == 1
    assert "| Security | 1 (2) | 1 (2) | 0 (0) |" in result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("proof report: ")]
    assert problems == ["proof report: Faults: site t.py::b not run (2 items: 1 not run, 1 passed; "
                        "not passing: b[n2])"]


def test_records_with_two_categories_or_plugin_errors_are_problems(tmp_path):
    records_dir = write_records(tmp_path, {
        "t.py::a": {"categories": ["bad_input", "fault"], "outcome": "passed"},  # an older record's list
        "t.py::b[1]": item("t.py::b", "bad_input", "passed"),
        "t.py::b[2]": item("t.py::b", "fault", "passed"),
        "t.py::c[1]": {"categories": ["security"], "outcome": "passed"}},  # older, no function: from nodeid
        errors=["t.py::d carries 2 proof markers (fault, security): a test proves exactly one category"])
    result = report(records_dir, "--min", "security=1")
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("proof report: ")]
    assert problems == [
        "proof report: site: t.py::d carries 2 proof markers (fault, security): a test proves exactly one category",
        "proof report: site t.py::a carries 2 proof categories (bad_input, fault): a test proves exactly one",
        "proof report: site t.py::b: items in two proof categories (bad_input, fault): a test proves exactly one",
    ]
    assert "- `site` t.py::c: passed (1 item)" in (records_dir / "REPORT.md").read_text()


def test_no_records_is_a_failure_not_an_empty_pass(tmp_path):
    (tmp_path / "artifacts" / "proof").mkdir(parents=True)
    result = report(tmp_path / "artifacts" / "proof")
    assert result.returncode == 1 and "no records" in result.stdout


@pytest.mark.parametrize("minimum", ["bad=1", "fault=x", "fault"])
def test_a_malformed_minimum_is_a_usage_error(tmp_path, minimum):
    records_dir = write_records(tmp_path, {"t.py::a": item("t.py::a", "fault", "passed")})
    result = report(records_dir, "--min", minimum)
    assert result.returncode == 2 and "want CATEGORY=N" in result.stderr


def test_the_makefile_call_still_works(tmp_path):
    """`make test` calls `python3 lab/proof_report.py --min CATEGORY=N ...` from the repository root,
    with the Makefile's PROOF_MINIMUMS."""
    makefile = (ROOT / "Makefile").read_text()
    assert "python3 lab/proof_report.py $(addprefix --min ,$(PROOF_MINIMUMS))" in makefile
    line = next(line for line in makefile.splitlines() if line.startswith("PROOF_MINIMUMS"))
    minimums = line.split(":=", 1)[1].split()
    tests = {f"t.py::{category}{i}": item(f"t.py::{category}{i}", category, "passed")
             for category in ("bad_input", "fault", "idempotence", "check_mode", "security") for i in range(200)}
    records_dir = write_records(tmp_path, tests)
    result = report(records_dir, *[arg for m in minimums for arg in ("--min", m)])
    assert result.returncode == 0, result.stdout + result.stderr
