"""pytest plugin: the proof categories of the molecule tests, and a record of how each test ended.

Loaded into every scenario's verifier with `-p proofreport` (PYTEST_ADDOPTS in
.config/molecule/config.yml). A test carries one or more of the markers below; at the end of the
session the plugin writes every marked test's outcome to
`$CHATFLEET_ROOT/artifacts/proof/<suite>.json`, which `lab/proof_report.py` sums up into the
report that `make test` prints (and checks against the minimums of docs/PROOF.md).
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

_outcomes: dict[str, dict] = {}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in CATEGORIES.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _suite_name() -> str:
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    project = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."))
    if scenario and scenario != "default":
        return scenario
    return f"role-{project.name}"


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:  # what runs, after -k and -m deselection
        categories = sorted({m.name for m in item.iter_markers() if m.name in CATEGORIES})
        if categories:
            _outcomes[item.nodeid] = {"categories": categories, "outcome": "not run"}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _outcomes.get(report.nodeid)
    if record is None:
        return
    if report.failed:
        record["outcome"] = "failed"
    elif report.skipped and record["outcome"] != "failed":
        record["outcome"] = "skipped"
    elif report.when == "call" and report.passed:
        record["outcome"] = "passed"


def pytest_sessionfinish(session: pytest.Session) -> None:
    root = Path(os.environ.get("CHATFLEET_ROOT", Path(__file__).resolve().parents[2]))
    if not _outcomes or session.config.getoption("collectonly", False):
        return
    out = root / "artifacts" / "proof"
    out.mkdir(parents=True, exist_ok=True)
    suite = _suite_name()
    (out / f"{suite}.json").write_text(json.dumps({"suite": suite, "tests": _outcomes}, indent=1,
                                                  sort_keys=True))
