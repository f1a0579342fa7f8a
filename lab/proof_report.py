#!/usr/bin/env python3
"""Sum up the proof records of the molecule verifiers (molecule/shared/proofreport.py) into one
report: per category (bad input, faults, idempotence, check mode, security) and scenario, how many
test FUNCTIONS passed or did not, with their pytest items (one per parameter set and host) in
brackets, and every function by name with its outcome and item count.

A function passes when every one of its items passed, or passed and skipped (a test that does not
apply to one host) with at least one passed. Any failed item fails the function.

Writes artifacts/proof/REPORT.md, prints the summary table, and exits 1 when a marked function
failed, never ran, failed as expected (xfail) or passed against its xfail mark (xpass), when a
test carries more than one proof category, or when a category has fewer passed functions than its
minimum (`--min bad_input=30`), so a marker lost in an edit fails `make test` instead of shrinking
the proof silently. Standard library only: it runs with the system python3.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATEGORY_TITLES = {
    "bad_input": "Bad input",
    "fault": "Faults",
    "idempotence": "Idempotence",
    "check_mode": "Check mode",
    "security": "Security",
}
# A function's outcome from its items' outcomes: the first of these that any item has wins, except
# that "passed" needs no item failing, unrun or x-marked, and "skipped" means every item skipped.
PROBLEM_OUTCOMES = ("failed", "xpassed", "xfailed", "not run")
LEGEND = ("Figures are test functions; in brackets, the pytest items of those functions (one per "
          "parameter set and host). A function passed when each of its items passed or skipped, at "
          "least one passed; not passed: failed, xfailed, xpassed, never run, or skipped on every host.")


def load(records_dir: Path) -> dict[str, dict]:
    """suite -> {"tests": {nodeid: record}, "errors": [...]} of each record file."""
    suites = {}
    for path in sorted(records_dir.glob("*.json")):
        data = json.loads(path.read_text())
        suites[data["suite"]] = {"tests": data.get("tests", {}), "errors": list(data.get("errors", []))}
    return suites


def _function_of(nodeid: str, record: dict) -> str:
    # Records written before the plugin named the function: the node id without its parameters.
    return record.get("function") or nodeid.split("[", 1)[0]


def _categories_of(record: dict) -> list[str]:
    if "category" in record:
        return [record["category"]]
    return sorted(set(record.get("categories", [])))  # older records: a list


def function_outcome(outcomes: list[str]) -> str:
    for outcome in PROBLEM_OUTCOMES:
        if outcome in outcomes:
            return outcome
    if "passed" in outcomes:
        return "passed"
    return "skipped"


def group(suites: dict[str, dict]) -> tuple[dict, list[str]]:
    """category -> [function entry], each {"suite", "function", "outcome", "items": {nodeid: outcome}},
    sorted by suite and function; and the problems found in the records themselves (plugin errors,
    a test with several proof categories, a function whose items disagree on the category)."""
    problems: list[str] = []
    functions: dict[tuple[str, str], dict] = {}
    for suite, data in sorted(suites.items()):
        problems += [f"{suite}: {error}" for error in data["errors"]]
        for nodeid, record in sorted(data["tests"].items()):
            categories = _categories_of(record)
            if len(categories) != 1:
                problems.append(f"{suite} {nodeid} carries {len(categories)} proof categories "
                                f"({', '.join(categories) or 'none'}): a test proves exactly one")
                continue
            key = (suite, _function_of(nodeid, record))
            entry = functions.setdefault(key, {"suite": suite, "function": key[1], "category": categories[0],
                                               "items": {}})
            if entry["category"] != categories[0]:
                problems.append(f"{suite} {key[1]}: items in two proof categories "
                                f"({entry['category']}, {categories[0]}): a test proves exactly one")
                continue
            entry["items"][nodeid] = record["outcome"]
    by_category: dict[str, list[dict]] = defaultdict(list)
    for key in sorted(functions):
        entry = functions[key]
        entry["outcome"] = function_outcome(list(entry["items"].values()))
        by_category[entry["category"]].append(entry)
    return by_category, problems


def _items_text(entry: dict) -> str:
    counts = Counter(entry["items"].values())
    total = sum(counts.values())
    text = f"{total} item" + ("s" if total != 1 else "")
    if set(counts) != {entry["outcome"]}:
        text += ": " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    return text


def _cell(entries: list[dict]) -> str:
    return f"{len(entries)} ({sum(len(e['items']) for e in entries)})"


def render(by_category: dict, suites: list[str]) -> tuple[str, str]:
    table = ["| category: functions (items) | " + " | ".join(suites) + " | passed | not passed |",
             "| --- | " + " | ".join("---:" for _ in suites) + " | ---: | ---: |"]
    for category, title in CATEGORY_TITLES.items():
        entries = by_category.get(category, [])
        passed = [e for e in entries if e["outcome"] == "passed"]
        other = [e for e in entries if e["outcome"] != "passed"]
        cells = []
        for suite in suites:
            in_suite = [e for e in entries if e["suite"] == suite]
            cells.append(_cell([e for e in in_suite if e["outcome"] == "passed"]) if in_suite else "")
        table.append(f"| {title} | " + " | ".join(cells) + f" | {_cell(passed)} | {_cell(other)} |")
    table += ["", LEGEND]
    summary = "\n".join(table)
    detail = ["# Proof report", "", "Generated by `lab/proof_report.py` from the molecule verifiers' records "
              "(`artifacts/proof/*.json`) of this run. Cells: passed test functions (their pytest items).", "",
              summary, ""]
    for category, title in CATEGORY_TITLES.items():
        entries = by_category.get(category, [])
        passed = [e for e in entries if e["outcome"] == "passed"]
        detail += [f"## {title}: {len(passed)} of {len(entries)} functions passed "
                   f"({sum(len(e['items']) for e in entries)} items)", ""]
        if not entries:
            detail.append("- none")
        for entry in entries:
            detail.append(f"- `{entry['suite']}` {entry['function']}: {entry['outcome']} ({_items_text(entry)})")
            if entry["outcome"] != "passed":
                detail += [f"  - {nodeid.split('::', 1)[-1]}: {outcome}"
                           for nodeid, outcome in sorted(entry["items"].items()) if outcome != "passed"]
        detail.append("")
    return summary, "\n".join(detail)


def parse_minimums(parser: argparse.ArgumentParser, minimums: list[str]) -> dict[str, int]:
    wanted = {}
    for minimum in minimums:
        category, _, number = minimum.partition("=")
        if category not in CATEGORY_TITLES or not number.isdigit():
            parser.error(f"--min {minimum!r}: want CATEGORY=N with CATEGORY one of {', '.join(CATEGORY_TITLES)}")
        wanted[category] = int(number)
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=ROOT / "artifacts" / "proof")
    parser.add_argument("--min", action="append", default=[], metavar="CATEGORY=N",
                        help="least number of passed test functions in a category")
    args = parser.parse_args()
    wanted = parse_minimums(parser, args.min)
    suites = load(args.records)
    if not suites:
        print(f"proof report: no records under {args.records} (did the molecule verifiers run?)")
        return 1
    by_category, problems = group(suites)
    summary, detail = render(by_category, sorted(suites))
    (args.records / "REPORT.md").write_text(detail)
    print(summary)
    print(f"(every function by name: {args.records / 'REPORT.md'})")
    # A skip is a test that does not apply to a host (a cache-only check on a GPU node): not a pass,
    # not a problem. A failure, a test collected but never run (a session cut short), an expected
    # failure (xfail) and an unexpected pass (xpass) are.
    for category, title in CATEGORY_TITLES.items():
        for entry in by_category.get(category, []):
            if entry["outcome"] in PROBLEM_OUTCOMES:
                bad = [nodeid.split("::", 1)[-1] for nodeid, outcome in sorted(entry["items"].items())
                       if outcome in PROBLEM_OUTCOMES]
                problems.append(f"{title}: {entry['suite']} {entry['function']} {entry['outcome']} "
                                f"({_items_text(entry)}; not passing: {', '.join(bad)})")
    for category, number in wanted.items():
        passed = sum(e["outcome"] == "passed" for e in by_category.get(category, []))
        if passed < number:
            problems.append(f"{CATEGORY_TITLES[category]}: {passed} functions passed, at least {number} wanted")
    for problem in problems:
        print(f"proof report: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
