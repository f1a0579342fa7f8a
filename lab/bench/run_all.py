#!/usr/bin/env python3
"""`make bench`: every benchmark of the project in one run, written to docs/BENCHMARKS.md.

  .venv/bin/python lab/bench/run_all.py [--runs 3] [--only cold,scale,settings,models,pip] [--scale 1,2,4,8] [--out docs/BENCHMARKS.md]

Sections, in this order (each can be picked with --only; a section not picked keeps what the page
held for it, with the date and command of the run that measured it):
  cold      `make lab-down`, then `make lab`: the lab's two nodes provisioned from new containers
  noop      a no-op site.yml over the 2-node lab, over SSH (the lab's connection) and over the docker
            connection, alternating; then one more SSH run profiled per role and per task
  scale     a no-op site.yml over 1, 2, 4 and 8 GPU nodes (--scale; the lab grown by extra nodes)
            with the default batches, the largest also in one batch, and at 2 nodes the chatfleet
            tool against plain ansible-playbook on the same run
  settings  the same no-op on the lab with one Ansible setting changed at a time, alternating with
            the project's settings (ansible.cfg): pipelining off, a fact cache, forks 1
  models    lab/bench/models_pull.py: a model pull against a plain copy of the same bytes
  pip       lab/bench/pip_vs_uv.py: pip against uv for the Chatchat requirement set
  backup    lab/bench/backup_restore.py: chatfleet backup and restore on the lab, its data and with
            100 000 generated vectors, and how long the writers were down
Needs the lab mirror (`make mirror`); scale, settings and backup need a converged lab (cold leaves one).
Every figure of a section comes from the run named under it; nothing is copied between runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SECTIONS = ("cold", "noop", "scale", "models", "pip", "settings", "backup")
# The target of a no-op site.yml over the 2-node lab, over SSH, and the scaling targets (issue 21):
# the largest node count against one node, with the default batches and in one batch.
NOOP_TARGET_SECONDS = 60
SCALE_TARGET_RATIO = {"batched": 2.5, "single": 1.5}
CHANGED = re.compile(r"changed=(\d+)")
# Each section on the page starts with this line, so that a run of some sections keeps the others.
SECTION_MARKER = re.compile(r"^<!-- bench section: (\w+) -->\n", re.M)


def kept_sections(page: str) -> dict[str, str]:
    """The sections of an existing page by name (what a run of other sections leaves as it was)."""
    pieces = SECTION_MARKER.split(page)
    return {pieces[i]: pieces[i + 1].strip() + "\n" for i in range(1, len(pieces) - 1, 2) if pieces[i] in SECTIONS}


def run(argv: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    print(f"bench: {' '.join(argv)}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds, proc.stdout


def cpu_jiffies() -> tuple[int, int]:
    """This machine's CPU time so far, all cores: (busy, total), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values)
    return total - values[3] - values[4], total  # idle and iowait


def version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "not found"


def machine() -> str:
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return (f"{platform.freedesktop_os_release().get('PRETTY_NAME', platform.platform())}, "
            f"{os.cpu_count()} cores, {int(mem.group(1)) / 1024 ** 2:.1f} GiB memory, kernel {platform.release()}; "
            f"{version(['docker', '--version'])}; {version([str(Path(PYTHON).parent / 'ansible'), '--version'])}; "
            f"GPU: {'yes' if Path('/dev/nvidia0').exists() else 'none (the lab replays recorded nvidia-smi output)'}")


def section_cold(runs: int) -> str:
    del runs  # one cold build: it takes minutes and its point is the size, not the spread
    run(["make", "lab-down"])
    seconds, out = run(["make", "lab"])
    recap = [line for line in out.splitlines() if re.match(r"^\S+\s+: ok=", line) and "localhost" not in line]
    return ("## Cold provisioning\n\n`make lab-down && make lab`: the mirror up, two new lab nodes, `site.yml` "
            "from nothing to Chatchat answering on both (the canary first, then the other), the summary.\n\n"
            f"| what | wall time |\n| --- | ---: |\n| `make lab` from new nodes | {seconds / 60:.1f} min |\n\n"
            "```\n" + "\n".join(recap) + "\n```\n")


DOCKER_CONNECTION = ["-e", "ansible_connection=community.docker.docker"]
PROFILE_LINE = re.compile(r"^(\S.*?) -+ ([0-9.]+)s$")


def profile_tables(out: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(role, seconds) of the profile_roles summary and (task, seconds) of the profile_tasks one, in
    the order printed (longest first), from a run with both callbacks."""
    blocks = re.split(r"^=+ *$", out, flags=re.M)
    tables = []
    for block in blocks[1:3]:
        rows = [(m.group(1).strip(), float(m.group(2))) for m in map(PROFILE_LINE.match, block.splitlines()) if m]
        tables.append([row for row in rows if row[0] != "total"])
    if len(tables) != 2:
        sys.exit("bench: the profiled run printed no profile_tasks/profile_roles summary")
    # Task names read "role : task"; role names have no colon.
    tasks, roles = tables if any(" : " in name for name, _ in tables[0]) else tables[::-1]
    return roles, tasks


def section_noop(runs: int) -> str:
    """The converged 2-node lab, default batches: SSH (what an operator sees) and the docker
    connection, alternating; then a profiled SSH run."""
    times: dict[str, list[float]] = {"ssh": [], "docker": []}
    for i in range(runs):
        for name in (("ssh", "docker") if i % 2 == 0 else ("docker", "ssh")):
            times[name].append(noop_seconds({}, DOCKER_CONNECTION if name == "docker" else []))
    ssh, docker = statistics.median(times["ssh"]), statistics.median(times["docker"])
    env = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks,ansible.posix.profile_roles",
           "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "15"}
    seconds, out = run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", "inventories/lab", "site.yml"],
                       env={"ANSIBLE_FORCE_COLOR": "false", **env})
    if any(int(n) for n in CHANGED.findall(out)):
        sys.exit("bench: the profiled run was not a no-op")
    roles, tasks = profile_tables(out)
    results = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=0\s+unreachable=0\s+failed=0\s+skipped=(\d+)", out, re.M)
    verdict = (f"met ({ssh:.1f} s)" if ssh <= NOOP_TARGET_SECONDS
               else f"not met: {ssh:.1f} s, {ssh - NOOP_TARGET_SECONDS:.0f} s over")
    return ("## A no-op run\n\n`site.yml` on the converged 2-node lab (default batches: lab-l40-1, then "
            "lab-a100-1; Milvus and the model cache on lab-l40-1), every run changed=0; over SSH as the lab "
            "inventory connects (pipelining, ControlPersist) and over the docker connection "
            f"(`-e ansible_connection=community.docker.docker`), {runs} runs each, alternating.\n\n"
            "| connection | median | runs (s) |\n| --- | ---: | --- |\n"
            f"| SSH | {ssh:.1f} s | {' / '.join(f'{t:.1f}' for t in times['ssh'])} |\n"
            f"| docker | {docker:.1f} s | {' / '.join(f'{t:.1f}' for t in times['docker'])} |\n\n"
            f"- Docker / SSH: {docker / ssh:.2f}x.\n"
            f"- Target: at most {NOOP_TARGET_SECONDS} s over SSH: {verdict}.\n\n"
            f"Where a no-op goes: one more SSH run with the `profile_roles` and `profile_tasks` callbacks "
            f"({seconds:.1f} s wall; task results per host: "
            + ", ".join(f"{host} {ok} ok + {skipped} skipped" for host, ok, skipped in results)
            + "). Seconds summed over both nodes; the nodes of a batch run side by side, the batches and "
            "the Milvus and model-cache plays one after another.\n\n"
            "| role | seconds |\n| --- | ---: |\n" + "\n".join(f"| {role} | {sec:.1f} |" for role, sec in roles)
            + "\n\n| the longest tasks | seconds |\n| --- | ---: |\n"
            + "\n".join(f"| {task.replace('|', '/')} | {sec:.2f} |" for task, sec in tasks) + "\n")


# Extra lab nodes for the scaling section: the ports of the lab's node of each GPU group (the
# defaults on lab-l40-1, inventories/lab/host_vars/lab-a100-1.yml) moved by 10 per node, since every
# lab node shares the host's network.
GROUP_PORTS = {"l40": {"chatchat_openai_api_port": 20000, "chatchat_controller_port": 20001,
                       "chatchat_model_worker_port": 20002, "chatchat_api_port": 7861, "chatchat_webui_port": 8501},
               "a100": {"chatchat_openai_api_port": 21000, "chatchat_controller_port": 21001,
                        "chatchat_model_worker_port": 21002, "chatchat_api_port": 8861, "chatchat_webui_port": 9501}}
GPU_PROFILE = {"l40": "l40x1", "a100": "a100x8"}


def scale_inventory(nodes: int) -> tuple[Path, list[str]]:
    """An inventory of the lab's two nodes plus extra ones up to `nodes` GPU nodes (alternating L40,
    A100), with the lab's group_vars and host_vars; returns it and the GPU nodes in rollout order."""
    directory = ROOT / ".lab" / "bench-scale"
    directory.mkdir(parents=True, exist_ok=True)
    for kind in ("group_vars", "host_vars"):
        if not (directory / kind).exists():
            (directory / kind).symlink_to(ROOT / "inventories" / "lab" / kind)
    lab = yaml.safe_load((ROOT / "inventories" / "lab" / "hosts.yml").read_text())["all"]
    lab_hosts = {name: spec for group in ("l40", "a100")
                 for name, spec in lab["children"]["gpu_nodes"]["children"][group]["hosts"].items()}
    groups: dict[str, dict] = {"l40": {"lab-l40-1": lab_hosts["lab-l40-1"]},
                               "a100": {"lab-a100-1": lab_hosts["lab-a100-1"]}}
    order = ["lab-l40-1", "lab-a100-1"]
    first_ssh_port = min(spec["ansible_port"] for spec in lab_hosts.values())
    for index in range(2, nodes):
        group, number = ("l40", "a100")[index % 2], index // 2 + 1
        name = f"lab-{group}-{number}"
        groups[group][name] = {"lab_gpu_profile": GPU_PROFILE[group], "ansible_port": first_ssh_port + index,
                               **{var: port + 10 * (number - 1) for var, port in GROUP_PORTS[group].items()}}
        order.append(name)
    # The lab inventory's connection (SSH with the lab's key and known_hosts, both under .lab/, which
    # is two levels above this inventory as it is above inventories/lab).
    inventory = {"all": {"vars": lab["vars"],
                         "children": {"gpu_nodes": {"children": {g: {"hosts": h} for g, h in groups.items()}},
                                      "milvus": {"hosts": {"lab-l40-1": None}},
                                      "model_cache": {"hosts": {"lab-l40-1": None}}}}}
    (directory / "hosts.yml").write_text(json.dumps(inventory, indent=1))  # JSON is YAML
    return directory, order


def noop_seconds(extra_env: dict, argv_extra: list[str], inventory: str = "inventories/lab") -> float:
    """Wall seconds of one site.yml run that must report changed=0 on every host."""
    seconds, out = run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", inventory, "site.yml",
                        *argv_extra], env={"ANSIBLE_FORCE_COLOR": "false", **extra_env})
    changed = [int(n) for n in CHANGED.findall(out)]
    if not changed or any(changed):
        sys.exit(f"bench: not a no-op ({' '.join(argv_extra)}: changed={changed})")
    return seconds


def section_scale(runs: int, counts: list[int]) -> str:
    """Default batches at every count; at the largest count also one batch (what the canary costs);
    at 2 nodes also the chatfleet tool on the same run (its overhead over ansible-playbook)."""
    largest = max(counts)
    inventory, order = scale_inventory(largest)
    ansible = str(Path(PYTHON).parent / "ansible-playbook")
    one_batch = ["-e", '{"rollout_serial": ["100%"]}', "-e", "rollout_allow_all_at_once=true"]
    build = 0.0
    if largest > 2:
        run([ansible, "-i", str(inventory / "hosts.yml"), "lab/playbooks/nodes.yml"])
        build, _ = run([ansible, "-i", str(inventory), "site.yml", *one_batch])

    busy: dict[tuple[int, str], list[float]] = {}

    def plain(count: int, extra: list[str], kind: str = "batched") -> float:
        """One no-op run; also how busy the machine's cores were through it (the nodes are containers here)."""
        before = cpu_jiffies()
        seconds = noop_seconds({}, ["--limit", ",".join(order[:count]), *extra], inventory=str(inventory))
        after = cpu_jiffies()
        busy.setdefault((count, kind), []).append((after[0] - before[0]) / max(1, after[1] - before[1]))
        return seconds

    def tool(count: int) -> float:
        artifacts = ROOT / ".cache" / "bench-tool-artifacts"
        seconds, _ = run([str(Path(PYTHON).parent / "chatfleet"), "site", "-i", str(inventory), "--limit",
                          ",".join(order[:count]), "--artifacts", str(artifacts)])
        report = json.loads((sorted(p for p in artifacts.iterdir() if (p / "report.json").exists())[-1]
                             / "report.json").read_text())
        if report["result"] != "successful" or any(h["changed"] for h in report["hosts"].values()):
            sys.exit(f"bench: the tool's run was not a no-op: {report['hosts']}")
        return seconds

    rows = ["| GPU nodes | no-op `site.yml`, default batches (canary 1, then 25%) | the same in one batch | "
            f"the same through `chatfleet site` | ratio to {counts[0]} node(s) |", "| ---: | ---: | ---: | ---: | ---: |"]
    medians: dict[int, dict[str, float]] = {}
    try:
        for count in counts:
            measures = {"batched": lambda c=count: plain(c, [])}
            if count == largest and count > 1:
                measures["single"] = lambda c=count: plain(c, one_batch, "single")
            if count == 2:
                measures["tool"] = lambda c=count: tool(c)
            times: dict[str, list[float]] = {name: [] for name in measures}
            for i in range(runs):
                names = list(measures) if i % 2 == 0 else list(measures)[::-1]
                for name in names:
                    times[name].append(measures[name]())
            median = medians[count] = {name: statistics.median(values) for name, values in times.items()}
            cells = [f"{median[name]:.1f} s" if name in median else "" for name in ("batched", "single", "tool")]
            rows.append(f"| {count} | " + " | ".join(cells) + f" | {median['batched'] / medians[counts[0]]['batched']:.2f} |")
    finally:
        if order[2:]:
            subprocess.run(["docker", "rm", "-f", "-v", *order[2:]], capture_output=True, check=False)
    grown = (f" The extra nodes were built in one batch ({build / 60:.1f} min) and removed afterwards."
             if build else "")
    reading = []
    if largest > counts[0]:
        step = (medians[largest]["batched"] - medians[counts[0]]["batched"]) / (largest - counts[0])
        reading.append(f"- Default batches: about {step:.0f} s more per GPU node ({counts[0]} to {largest} nodes).")
    if "single" in medians[largest]:
        reading.append(f"- {largest} nodes in one batch: {medians[largest]['single'] / medians[largest]['batched']:.2f}x "
                       "the default batches (forks run the hosts of a batch side by side, the batches run one "
                       "after another).")
    for kind, label in (("batched", "default batches"), ("single", "one batch")):
        if kind in medians[largest] and largest > counts[0]:
            ratio = medians[largest][kind] / medians[counts[0]]["batched"]
            target = SCALE_TARGET_RATIO[kind]
            reading.append(f"- Target, {label}: {largest} nodes at most {target}x one node: "
                           + ("met" if ratio <= target else "not met") + f" ({ratio:.2f}x).")
    cores = os.cpu_count() or 1
    shares = {key: statistics.median(values) for key, values in busy.items()}
    if (largest, "single") in shares and (counts[0], "batched") in shares:
        reading.append(
            f"- Why the ratio grows: every node is a container on this machine's {cores} cores, which were "
            f"{shares[(largest, 'single')]:.0%} busy through the {largest}-node one-batch runs and "
            f"{shares[(largest, 'batched')]:.0%} through its default batches, against "
            f"{shares[(counts[0], 'batched')]:.0%} for {counts[0]} node(s) (median of the runs, /proc/stat): the "
            "nodes' modules and the controller's forks queue for the same cores. On a fleet each node runs its "
            "modules on its own CPUs and only the controller is shared.")
    if 2 in medians and "tool" in medians[2]:
        reading.append(f"- `chatfleet site` (ansible-runner): {medians[2]['tool'] / medians[2]['batched']:.2f}x "
                       "plain `ansible-playbook` on the same 2 nodes.")
    return ("## Fleet scaling and the tool's overhead\n\nA no-op `site.yml` (every run must report changed=0) "
            f"over the first N GPU nodes of a lab of {max(largest, 2)} (`.lab/bench-scale/`: the lab's two nodes, "
            "then alternately L40 and A100 nodes on ports of their own; Milvus and the model cache stay on "
            f"lab-l40-1), forks 10, {runs} run(s) each, alternating order; the median.{grown}\n\n"
            + "\n".join(rows) + "\n" + ("\n" + "\n".join(reading) + "\n" if reading else ""))


def section_settings(runs: int) -> str:
    cache_dir = ROOT / ".cache" / "bench-facts"
    variants = {
        "pipelining off": ({"ANSIBLE_PIPELINING": "False"}, []),
        "fact cache (jsonfile, gathering smart)": ({"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "jsonfile",
                                                    "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache_dir),
                                                    "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600"}, []),
        "forks 1": ({}, ["--forks", "1"]),
    }
    # Pipelining and the fact cache act per task and per host: one node shows them at half the cost.
    # Forks act across the hosts of a batch: that pair runs on both nodes in one batch.
    one_node = ["--limit", "lab-l40-1"]
    both_in_one_batch = ["-e", '{"rollout_serial": ["100%"]}', "-e", "rollout_allow_all_at_once=true"]
    rows = ["| setting changed | project's settings (median) | changed setting (median) | ratio |",
            "| --- | ---: | ---: | ---: |"]
    # Warm the fact cache once so that the cached runs read it (what a second run of the day sees).
    noop_seconds(variants["fact cache (jsonfile, gathering smart)"][0], one_node)
    for name, (env, argv_extra) in variants.items():
        base, changed = [], []
        limit = both_in_one_batch if name == "forks 1" else one_node
        for i in range(runs):
            pair = [("base", {}, limit), ("changed", env, argv_extra + limit)]
            for label, e, a in (pair if i % 2 == 0 else pair[::-1]):
                (base if label == "base" else changed).append(noop_seconds(e, a))
        b, c = statistics.median(base), statistics.median(changed)
        rows.append(f"| {name} ({'1 node' if limit == one_node else '2 nodes, one batch'}) | {b:.1f} s | {c:.1f} s | {c / b:.2f} |")
    return ("## Ansible settings\n\nA no-op `site.yml` on the lab with the project's `ansible.cfg` (pipelining on, "
            "forks 10, no fact cache), against the same run with one setting changed, alternating, "
            f"{runs} run(s) each.\n\n" + "\n".join(rows) + "\n")


def section_models(runs: int) -> str:
    run([PYTHON, "lab/mirror.py", "bench-model", "--size-mb", "512"])
    _, out = run([PYTHON, "lab/bench/models_pull.py", "--runs", str(runs), "--size-mb", "512", "--nodes", "4"])
    return ("## Model pull against a plain copy\n\n`lab/bench/models_pull.py --size-mb 512 --nodes 4`: the models "
            "role's pull (git metadata, the LFS objects straight from the batch API's URLs, hashed while written, "
            "verify every file) against a plain download of the same "
            "bytes plus a sha256, and a plain `git lfs clone`; then 4 nodes from the mirror against 4 nodes from a "
            f"site cache; {runs} runs, alternating order. Details of the method: "
            "[bench-models-pull.md](bench-models-pull.md).\n\n```\n" + out.strip() + "\n```\n")


def section_pip(runs: int) -> str:
    _, out = run([PYTHON, "lab/bench/pip_vs_uv.py", "--runs", str(runs)])
    return ("## pip against uv\n\n`lab/bench/pip_vs_uv.py`: the Chatchat requirement set (the lab's pins and "
            "constraints, the release's requirements.txt) into fresh venvs from the mirror, uv with "
            f"`--compile-bytecode` as the role runs it; {runs} runs, "
            "alternating order. Details: [bench-pip-vs-uv.md](bench-pip-vs-uv.md).\n\n```\n" + out.strip() + "\n```\n")


def section_backup(runs: int) -> str:
    del runs  # one backup and one restore per data set: the sizes are the point
    _, out = run([PYTHON, "lab/bench/backup_restore.py", "--vectors", "100000", "--dim", "768"])
    return ("## Backup and restore\n\n`lab/bench/backup_restore.py --vectors 100000 --dim 768` on the converged lab: "
            "`chatfleet backup`, then `chatfleet restore --yes`, over both nodes, for the lab's data and again "
            "with a generated collection of 100 000 768-float vectors in its Milvus (pip method, on lab-l40-1). "
            "Writers down: from stopping Chatchat's API and Milvus on lab-l40-1 to both answering their health "
            "URLs again and Milvus's collections holding their rows (the copy is `cp -a` beside the backups; the "
            "archive is packed after the restart). Data sizes are `du` of the data directories: the lab's Milvus "
            "(Milvus Lite) keeps its ~370 MiB of binaries there, and dropped collections' segments stay until "
            "Milvus's garbage collection.\n\n" + out.strip() + "\n\n"
            "Where the downtime goes (`ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks ansible-playbook "
            "playbooks/backup.yml` on the lab): stopping Milvus 30.6 s (Milvus Lite 2.3.5 does not exit on SIGTERM; "
            "systemd kills it at the unit's TimeoutStopSec=30, after the flush, so nothing unflushed is lost), "
            "Milvus back to healthy 10.2 s, the API answering 4.0 s, the copy 0.5 s (this machine's filesystem "
            "makes `cp --reflink=auto` a clone; on ext4 it is a real copy at disk speed). A server that stops on "
            "SIGTERM (compose, package) takes the 30 s off.\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--scale", default="1,2,4,8", help="GPU node counts of the scale section")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    counts = sorted({int(n) for n in args.scale.split(",") if n.strip()})
    if not counts or counts[0] < 1:
        parser.error("--scale: node counts of 1 or more, e.g. 1,2,4,8")
    command = "make bench" + (f" BENCH_ONLY={args.only}" if set(chosen) != set(SECTIONS) else "") + \
        (f" BENCH_RUNS={args.runs}" if args.runs != 3 else "") + (f" BENCH_SCALE={args.scale}" if args.scale != "1,2,4,8" else "")
    sections = kept_sections(args.out.read_text()) if args.out.exists() else {}
    header = ("# Benchmarks\n\n"
              "Regenerated by `make bench` (`lab/bench/run_all.py`): every section in one run; "
              "`make bench BENCH_ONLY=<sections>` measures only those and keeps the others, each section "
              "naming the run that measured it. "
              f"Machine of the latest run ({datetime.date.today().isoformat()}): {machine()}.\n\n"
              "Comparisons are side by side in one run, alternating order, and read as ratios: the build "
              "machines are noisy. Rerun with the same command.\n")
    for name in (n for n in SECTIONS if n in chosen):
        section_started = time.monotonic()
        body = section_scale(args.runs, counts) if name == "scale" else globals()[f"section_{name}"](args.runs)
        sections[name] = (body.rstrip() + f"\n\nMeasured by `{command}` on {datetime.date.today().isoformat()}, "
                          f"in {(time.monotonic() - section_started) / 60:.0f} min.\n")
        # Written after every section: a bench stopped half-way keeps what it measured.
        args.out.write_text(header + "".join(f"\n<!-- bench section: {n} -->\n{sections[n]}"
                                             for n in SECTIONS if n in sections))
        print(f"bench: wrote {args.out} ({name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
