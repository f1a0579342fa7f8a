#!/usr/bin/env python3
"""Milvus's health gate in the lab: unit start to healthy, and the smoke test's round trip.

Run on the host against a node where the milvus role has converged (pip method), e.g. after
`make lab` (lab-l40-1) or `make molecule ROLE=milvus CMD=converge` (milvus-1):

    .venv/bin/python lab/bench/milvus_gate.py [--node lab-l40-1] [--runs 5] [--json out.json]

stop              the time `systemctl stop milvus` takes (Milvus 2.3.5 sometimes hangs while
                  stopping; the unit then SIGKILLs it after TimeoutStopSec=30).
start_to_healthy  on the node, after that stop: the time from `systemctl start milvus`
                  until GET /healthz answers OK (polled every 50 ms inside the node, so docker exec
                  is not counted). The unit is Type=exec: start returns once the server is exec'd.
restart_to_healthy the same from `systemctl restart milvus` (a config change's handler).
smoke             the role's milvus_smoke module (create, insert 32 vectors, flush, index, load,
                  search, drop as the application user), as `ansible -m milvus_smoke`; its own
                  round_trip_ms (no Ansible overhead) and the per-step times.

The ports come from the node's /etc/milvus/lite.json; the application user and password from
the lab inventory (inventories/lab/group_vars/all/milvus.yml), or --user/--password.
Prints a Markdown table (median, min, max); --json writes every raw value.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PYTHON = "/opt/chatfleet/milvus-client/bin/python"

TIMER = r"""
import json, subprocess, sys, time, urllib.request
url, action = sys.argv[1], sys.argv[2]
stop_s = None
if action == "start":
    started = time.monotonic()
    subprocess.run(["systemctl", "stop", "milvus"], check=True)
    stop_s = time.monotonic() - started
started = time.monotonic()
subprocess.run(["systemctl", action, "milvus"], check=True)
while True:
    try:
        if urllib.request.urlopen(url, timeout=1).read().strip() == b"OK":
            break
    except OSError:
        pass
    if time.monotonic() - started > 300:
        sys.exit("not healthy after 300 s")
    time.sleep(0.05)
print(json.dumps([time.monotonic() - started, stop_s]))
"""


def docker_exec(node: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["docker", "exec", "-i", node, *argv], input=stdin, capture_output=True,
                          text=True, check=True).stdout


def time_to_healthy(node: str, healthz: str, action: str) -> tuple[float, float | None]:
    """(seconds from `systemctl <action>` to healthy, seconds `systemctl stop` took before a start)."""
    return tuple(json.loads(docker_exec(node, CLIENT_PYTHON, "-", healthz, action, stdin=TIMER).strip().splitlines()[-1]))


def smoke(node: str, inventory: Path, port: int, user: str, password: str) -> dict:
    env = dict(os.environ, ANSIBLE_LIBRARY=str(ROOT / "roles/milvus/library"),
               ANSIBLE_MODULE_UTILS=str(ROOT / "roles/milvus/module_utils"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    args = json.dumps({"host": "127.0.0.1", "port": port, "user": user, "password": password,
                       "collection": "chatfleet_bench"})
    ansible = str(Path(sys.executable).parent / "ansible")  # the venv's, as in `.venv/bin/python lab/...`
    proc = subprocess.run([ansible, node, "-i", str(inventory), "-m", "milvus_smoke", "-a", args,
                           "-e", f"ansible_python_interpreter={CLIENT_PYTHON}"],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        sys.exit(f"smoke failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"][node]
    return {"round_trip_ms": result["round_trip_ms"], "steps_ms": result["steps_ms"]}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", default="lab-l40-1")
    parser.add_argument("--inventory", type=Path, default=ROOT / "inventories/lab/hosts.yml",
                        help="an inventory holding --node (molecule's for milvus-1)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--user", default=None)
    parser.add_argument("--password", default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    lab_vars = (ROOT / "inventories/lab/group_vars/all/milvus.yml").read_text()
    defaults = dict(line.split(": ", 1) for line in lab_vars.splitlines() if line.startswith("milvus_app_"))
    user = args.user or defaults["milvus_app_user"]
    password = args.password or defaults["milvus_app_password"]
    settings = json.loads(docker_exec(args.node, "cat", "/etc/milvus/lite.json"))
    healthz = f"http://127.0.0.1:{settings['metrics_port']}/healthz"
    port = settings["config"]["proxy_port"]

    raw: dict[str, list] = {"stop_s": [], "start_to_healthy_s": [], "restart_to_healthy_s": [], "smoke": []}
    for _ in range(args.runs):
        healthy, stop = time_to_healthy(args.node, healthz, "start")
        raw["stop_s"].append(stop)
        raw["start_to_healthy_s"].append(healthy)
        raw["smoke"].append(smoke(args.node, args.inventory, port, user, password))
        raw["restart_to_healthy_s"].append(time_to_healthy(args.node, healthz, "restart")[0])

    steps = sorted(raw["smoke"][0]["steps_ms"])
    print(f"Milvus gate on {args.node}, {args.runs} runs\n")
    print("| measure | median | min | max |\n| --- | ---: | ---: | ---: |")
    print(f"| `systemctl stop` (s; TimeoutStopSec=30 then SIGKILL) | {summary(raw['stop_s'])} |")
    print(f"| unit start to healthy (s) | {summary(raw['start_to_healthy_s'])} |")
    print(f"| unit restart to healthy (s) | {summary(raw['restart_to_healthy_s'])} |")
    print(f"| smoke round trip (ms) | {summary([s['round_trip_ms'] for s in raw['smoke']])} |")
    for step in steps:
        print(f"| smoke step {step} (ms) | {summary([s['steps_ms'][step] for s in raw['smoke']])} |")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
