#!/usr/bin/env python3
"""Run molecule scenarios in concurrent lanes: the scenarios of one lane one after the other,
the lanes side by side.

Every scenario's nodes share the host's network, so two scenarios may run at the same time only
when they listen on different ports. The Makefile puts the scenarios that serve the lab's
Chatchat ports (chatchat_services, the whole site) in one lane and the role scenarios, whose
ports are their own, in the other. Each output line carries its scenario's name; a summary of
every scenario's result and wall time ends the run, followed by the failure lines of each failed
scenario (pytest's `FAILED`/`ERROR` summary lines, molecule's `CRITICAL` ones), so the tail of a
long CI log names what failed. A failed scenario stops its lane (later scenarios of that lane are
not run); the other lanes go on, so one run shows every failure.
Exit status: 0 when every scenario passed, 1 otherwise.

Usage: molecule_lanes.py --lane "roles/chatchat_services molecule/site" --lane "roles/git_lfs ..."
  roles/<role>   : `molecule test` in roles/<role> (its default scenario)
  molecule/<name>: `molecule test -s <name>` from the repository root
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_print_lock = threading.Lock()
# Lines that say why a scenario failed: pytest's short test summary, molecule's fatal errors.
FAILURE_PREFIXES = ("FAILED ", "ERROR ", "CRITICAL ")
FAILURE_LINES_KEPT = 20


def say(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def scenario_command(scenario: str) -> tuple[list[str], Path]:
    kind, _, name = scenario.partition("/")
    if kind == "roles" and (ROOT / scenario / "molecule" / "default" / "molecule.yml").is_file():
        return ["molecule", "test"], ROOT / scenario
    if kind == "molecule" and (ROOT / scenario / "molecule.yml").is_file():
        return ["molecule", "test", "-s", name], ROOT
    raise SystemExit(f"molecule_lanes: {scenario!r} is neither roles/<role> with a default scenario "
                     f"nor molecule/<scenario>")


def run_lane(scenarios: list[str], results: dict[str, tuple[str, float]], failures: dict[str, list[str]]) -> None:
    for scenario in scenarios:
        argv, cwd = scenario_command(scenario)
        label = scenario.split("/", 1)[1]
        say(f"[{label}] === {' '.join(argv)} (in {cwd.relative_to(ROOT) if cwd != ROOT else '.'})\n")
        started = time.monotonic()
        with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1, errors="replace") as proc:
            assert proc.stdout is not None
            failed_lines = []
            for line in proc.stdout:
                if line.startswith(FAILURE_PREFIXES) and len(failed_lines) < FAILURE_LINES_KEPT:
                    failed_lines.append(line.rstrip()[:300])
                say(f"[{label}] {line}")
        elapsed = time.monotonic() - started
        outcome = "passed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        results[scenario] = (outcome, elapsed)
        say(f"[{label}] === {outcome} in {elapsed / 60:.0f} min {elapsed % 60:02.0f} s\n")
        if proc.returncode != 0:
            failures[scenario] = failed_lines
            for rest in scenarios[scenarios.index(scenario) + 1:]:
                results[rest] = ("not run (an earlier scenario of its lane failed)", 0.0)
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lane", action="append", required=True,
                        help="scenarios run one after the other, separated by spaces or commas")
    args = parser.parse_args()
    lanes = [[s.rstrip("/") for s in lane.replace(",", " ").split()] for lane in args.lane]
    for lane in lanes:
        for scenario in lane:
            scenario_command(scenario)  # fail on a typo before anything starts
    results: dict[str, tuple[str, float]] = {}
    failures: dict[str, list[str]] = {}
    started = time.monotonic()
    threads = [threading.Thread(target=run_lane, args=(lane, results, failures)) for lane in lanes if lane]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.monotonic() - started
    say("\nmolecule scenarios (lanes side by side):\n")
    for number, lane in enumerate(lanes, 1):
        for scenario in lane:
            outcome, elapsed = results.get(scenario, ("not run", 0.0))
            say(f"  lane {number}  {scenario:32} {outcome:10} {elapsed / 60:5.1f} min\n")
    say(f"  all lanes: {total / 60:.1f} min wall\n")
    for scenario, lines in failures.items():
        say(f"\n{scenario} failed:\n" + "".join(f"  {line}\n" for line in lines or ["(no failure line found)"]))
    return 0 if all(outcome == "passed" for outcome, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
