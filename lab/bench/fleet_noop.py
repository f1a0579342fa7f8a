"""No-op site.yml over 1 and 2 lab nodes, and the chatfleet tool's overhead over plain ansible-playbook.

  .venv/bin/python lab/bench/fleet_noop.py [--runs 3] [--inventory inventories/lab]

Needs a converged lab (`make lab`). Each run times, in an order that alternates between runs:
  plain-1   ansible-playbook -i INV site.yml --limit <first GPU node>
  plain-2   ansible-playbook -i INV site.yml                    (every node)
  tool-2    chatfleet site -i INV                               (the same run through ansible-runner)
Every run must report changed=0 (plain) or a successful report with no change (tool), or the
bench stops. Prints a Markdown table of the median, min and max wall seconds, and the ratios.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHANGED = re.compile(r"changed=(\d+)")


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return seconds, proc.stdout


def measures(inventory: str, first_node: str, artifacts: Path) -> dict:
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, "site.yml"]

    def plain(limit: list[str]):
        def measure() -> float:
            seconds, out = timed(playbook + limit)
            changed = [int(n) for n in CHANGED.findall(out)]
            if not changed or any(changed):
                sys.exit(f"not a no-op: changed={changed}")
            return seconds
        return measure

    def tool() -> float:
        seconds, _ = timed([str(Path(sys.executable).parent / "chatfleet"), "site", "-i", inventory, "--artifacts", str(artifacts)])
        report = json.loads((sorted(artifacts.iterdir())[-1] / "report.json").read_text())
        if report["result"] != "successful" or any(h["changed"] for h in report["hosts"].values()):
            sys.exit(f"not a no-op: {report['hosts']}")
        return seconds

    return {"plain-1": plain(["--limit", first_node]), "plain-2": plain([]), "tool-2": tool}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inventory", default="inventories/lab")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from chatfleet.inventory import load_fleet
    first_node = load_fleet(args.inventory).groups["gpu_nodes"][0]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-noop-") as tmp:
        runs = measures(args.inventory, first_node, Path(tmp))
        names = list(runs)
        for run in range(args.runs):
            order = names if run % 2 == 0 else names[::-1]
            for name in order:
                results.setdefault(name, []).append(runs[name]())
                print(f"run {run + 1} {name}: {results[name][-1]:.1f} s", file=sys.stderr, flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    print("| run | median | min | max |\n| --- | ---: | ---: | ---: |")
    for name, values in results.items():
        print(f"| {name} | {median[name]:.1f} s | {min(values):.1f} s | {max(values):.1f} s |")
    print(f"\nplain-2 / plain-1: {median['plain-2'] / median['plain-1']:.2f}; "
          f"tool-2 / plain-2: {median['tool-2'] / median['plain-2']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
