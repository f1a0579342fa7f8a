#!/usr/bin/env python3
"""Run molecule scenarios side by side: `--jobs` of them at a time, each next one (in the order given)
starting as soon as one has ended.

The Makefile lists the scenarios longest first by measured time (docs/TIMINGS.md), so the long ones
start at once and the short ones fill in around them (longest-processing-time-first: the jobs end
close together). Every scenario's nodes share the host's network, so scenarios that run at the same
time must listen on different ports: the whole site serves the lab's ports, every role scenario
has ports of its own. Each output line carries its scenario's name; a summary of every scenario's
result, start and wall time ends the run, followed by the failure lines of each failed scenario
(Ansible's failed tasks with their task names, pytest's `FAILED`/`ERROR` summary lines, molecule's
`CRITICAL` ones; not the `FAILED - RETRYING` lines of a wait that went on to pass), so the tail of a
long CI log names what failed. A failed scenario stops nothing else: one run shows every failure.
Exit status: 0 when every scenario passed, 1 otherwise.

With `--nice N`, every scenario but the first runs its controller side (molecule, ansible-playbook,
pytest) at niceness N: the first, the longest, is the run's critical path and gets the CPU it asks
for; the others take what it leaves. (The nodes' own processes run in their containers at the
usual priority.)

Usage: molecule_lanes.py --jobs 3 --nice 10 molecule/site roles/chatchat_services roles/git_lfs ...
  roles/<role>   : `molecule test` in roles/<role> (its default scenario)
  molecule/<name>: `molecule test -s <name>` from the repository root
"""
from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_print_lock = threading.Lock()
# Lines that say why a scenario failed: Ansible's failed tasks (each shown after its TASK line),
# pytest's short test summary, molecule's fatal errors.
ANSIBLE_FAILURE_PREFIXES = ("fatal: [", "failed: [")
FAILURE_PREFIXES = ("FAILED ", "ERROR ", "CRITICAL ")
FAILURE_LINES_KEPT = 30
FAILURE_LINE_CHARS = 500
# ansible.cfg's `callback_result_format = yaml` prints a failed task's result (msg, rc, stderr...)
# as indented lines under its `fatal:` line: the first of them are kept with it.
FAILURE_RESULT_LINES = 12


class FailureLines:
    """The last FAILURE_LINES_KEPT lines of one scenario's output that say why it failed (the
    decisive ones come last: the task that stopped the run, molecule's and pytest's verdicts)."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=FAILURE_LINES_KEPT)
        self._task = ""
        self._kept_of_task = 0  # lines kept for the current task (dropped again if it was ignored)
        self._result_lines_left = 0  # of the failed result being read

    def feed(self, line: str) -> None:
        line = line.rstrip()[:FAILURE_LINE_CHARS]
        if self._result_lines_left and line[:1].isspace():
            self._keep(line)
            self._result_lines_left -= 1
            return
        self._result_lines_left = 0
        if line.startswith("TASK ["):
            self._task, self._kept_of_task = line.rstrip(" *"), 0
        elif line.startswith("...ignoring"):  # the task's failures were ignore_errors
            for _ in range(min(self._kept_of_task, len(self.lines))):
                self.lines.pop()
            self._kept_of_task = 0
        elif line.startswith(ANSIBLE_FAILURE_PREFIXES):
            if self._kept_of_task == 0:
                self._keep(self._task)
            self._keep(line)
            self._result_lines_left = FAILURE_RESULT_LINES
        elif line.startswith(FAILURE_PREFIXES) and not line.startswith("FAILED - RETRYING"):
            self.lines.append(line)

    def _keep(self, line: str) -> None:
        if line:
            self.lines.append(line)
            self._kept_of_task += 1


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


def run_scenario(scenario: str, niceness: int = 0) -> tuple[str, float, list[str]]:
    """Run one scenario (at `niceness`); (outcome, seconds, its failure lines)."""
    argv, cwd = scenario_command(scenario)
    if niceness:
        argv = ["nice", "-n", str(niceness), *argv]
    label = scenario.split("/", 1)[1]
    say(f"[{label}] === {' '.join(argv)} (in {cwd.relative_to(ROOT) if cwd != ROOT else '.'})\n")
    started = time.monotonic()
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, errors="replace") as proc:
        assert proc.stdout is not None
        failed_lines = FailureLines()
        for line in proc.stdout:
            failed_lines.feed(line)
            say(f"[{label}] {line}")
    elapsed = time.monotonic() - started
    outcome = "passed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    say(f"[{label}] === {outcome} in {elapsed / 60:.0f} min {elapsed % 60:02.0f} s\n")
    return outcome, elapsed, list(failed_lines.lines) if proc.returncode != 0 else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="scenarios running at the same time")
    parser.add_argument("--nice", type=int, default=0, help="niceness of every scenario but the first")
    parser.add_argument("scenarios", nargs="+", help="in the order they start (longest first)")
    args = parser.parse_args()
    scenarios = [s.rstrip("/") for s in args.scenarios]
    for scenario in scenarios:
        scenario_command(scenario)  # fail on a typo before anything starts
    pending = collections.deque(scenarios)
    lock = threading.Lock()
    results: dict[str, tuple[str, float, float]] = {}  # scenario: (outcome, started at, seconds)
    failures: dict[str, list[str]] = {}
    started = time.monotonic()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                scenario = pending.popleft()
            begun = time.monotonic() - started
            outcome, elapsed, lines = run_scenario(scenario, 0 if scenario == scenarios[0] else args.nice)
            with lock:
                results[scenario] = (outcome, begun, elapsed)
                if lines or not outcome.startswith("passed"):
                    failures[scenario] = lines

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.monotonic() - started
    say(f"\nmolecule scenarios ({args.jobs} at a time, in the order they started):\n")
    for scenario in scenarios:
        outcome, begun, elapsed = results.get(scenario, ("not run", 0.0, 0.0))
        say(f"  {scenario:32} {outcome:16} from {begun / 60:5.1f} min  {elapsed / 60:5.1f} min\n")
    say(f"  all scenarios: {total / 60:.1f} min wall\n")
    for scenario, lines in failures.items():
        say(f"\n{scenario} failed:\n" + "".join(f"  {line}\n" for line in lines or ["(no failure line found)"]))
    return 0 if all(results.get(s, ("not run",))[0] == "passed" for s in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
