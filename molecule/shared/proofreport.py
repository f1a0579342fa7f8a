"""pytest plugin: the proof categories of the molecule tests, and a record of how each test ended.

Loaded into every scenario's verifier with `-p proofreport` (PYTEST_ADDOPTS in
.config/molecule/config.yml). A test carries exactly one of the markers below (two different
proof markers on one test stop the session at collection, naming the test). At the end of the
session the plugin writes every marked pytest item's outcome to
`$CHATFLEET_ROOT/artifacts/proof/<suite>.json`, which `lab/proof_report.py` sums up into the
report that `make test` prints (and checks against the minimums of docs/PROOF.md).

One record per pytest item (one per parameter set and, with testinfra, per host), each with the
identity of its test *function* (`path::[Class::]function`, no `[params]`, no `ansible://host`
ids), so that the report counts functions, not items:

    {"suite": "site", "errors": [],
     "tests": {"tests/test_x.py::test_y[ansible://node1-a]":
               {"function": "tests/test_x.py::test_y", "category": "bad_input",
                "outcome": "passed", "reason": ""}}}

Outcomes: passed, failed (in setup, call or teardown), skipped, xfailed (a test marked xfail
failed, as expected), xpassed (a test marked xfail passed), not run (collected, never reported:
a session cut short). `reason` holds the skip or xfail reason where there is one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CATEGORIES = {
    "bad_input": "malformed inventory or variables: the run stops before changing a host and names the variable",
    "fault": "an injected failure (mirror, checksum, interrupted pull, crash, restart): a clear failure, "
             "nothing lost, and the next run recovers",
    "idempotence": "a second run on a converged host reports changed=0",
    "check_mode": "check mode on a converged host changes nothing",
    "security": "service users, file modes, secrets never shown, authentication, sandboxing",
}
# Outcomes that end a record's story: a later phase's report (teardown) does not turn them back.
_PROBLEMS = ("failed", "xfailed", "xpassed")


def function_id(item: pytest.Item) -> str:
    """`path::[Class::]function` of an item: its node id without the parameter ids (`[...]`),
    testinfra's `ansible://host` ids included."""
    name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
    parent = item.parent.nodeid if item.parent is not None else ""
    return f"{parent}::{name}" if parent else name


def proof_categories(item: pytest.Item) -> list[str]:
    return sorted({mark.name for mark in item.iter_markers() if mark.name in CATEGORIES})


class ProofRecorder:
    """The records of one pytest session (kept on the session, not in module globals, so that
    several sessions in one process, as pytester runs them, never mix)."""

    def __init__(self) -> None:
        self.tests: dict[str, dict] = {}
        self.errors: list[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # Every collected item, before -k/-m deselection: a test with two proof markers is wrong
        # whether or not this run selects it.
        doubles = {}
        for item in items:
            categories = proof_categories(item)
            if len(categories) > 1:
                doubles.setdefault(function_id(item), categories)
        if doubles:
            self.errors = [f"{function} carries {len(categories)} proof markers ({', '.join(categories)}): "
                           f"a test proves exactly one category" for function, categories in sorted(doubles.items())]
            raise pytest.UsageError("proofreport: " + "; ".join(self.errors))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.errors:  # pytest calls this hook even when collection stopped with the error above
            return
        for item in session.items:  # what runs, after -k and -m deselection
            categories = proof_categories(item)
            if categories:
                self.tests[item.nodeid] = {"function": function_id(item), "category": categories[0],
                                           "outcome": "not run", "reason": ""}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.tests.get(report.nodeid)
        if record is None:
            return
        wasxfail = getattr(report, "wasxfail", None)
        if report.failed:
            if isinstance(report.longrepr, str) and report.longrepr.startswith("[XPASS(strict)]"):
                record["outcome"] = "xpassed"  # xfail(strict=True) or xfail_strict: pytest calls it failed
                record["reason"] = report.longrepr.removeprefix("[XPASS(strict)]").strip()
            else:
                record["outcome"] = "failed"
        elif record["outcome"] in _PROBLEMS:
            return
        elif report.skipped and wasxfail is not None:
            record["outcome"] = "xfailed"
            record["reason"] = str(wasxfail)
        elif report.skipped:
            record["outcome"] = "skipped"
            if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
                record["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.when == "call" and report.passed:
            if wasxfail is not None:
                record["outcome"] = "xpassed"
                record["reason"] = str(wasxfail)
            else:
                record["outcome"] = "passed"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not (self.tests or self.errors) or session.config.getoption("collectonly", False):
            return
        root = Path(os.environ.get("CHATFLEET_ROOT", Path(__file__).resolve().parents[2]))
        out = root / "artifacts" / "proof"
        out.mkdir(parents=True, exist_ok=True)
        suite = _suite_name()
        (out / f"{suite}.json").write_text(json.dumps(
            {"suite": suite, "errors": self.errors, "tests": self.tests}, indent=1, sort_keys=True))


def pytest_configure(config: pytest.Config) -> None:
    for name, text in CATEGORIES.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(ProofRecorder(), "proofreport-recorder")


def _suite_name() -> str:
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    project = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."))
    if scenario and scenario != "default":
        return scenario
    return f"role-{project.name}"
