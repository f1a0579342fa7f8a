#!/usr/bin/env python3
"""pip vs uv: install time of the same requirement set from the same mirror, side by side.

Run on the host against the running lab mirror:

    .venv/bin/python lab/bench/pip_vs_uv.py [--runs 3] [--python /usr/bin/python3]

The requirement set is what python_env installs on the lab's GPU nodes (lab/mirror.py's
lab_node_requirements()): the real v0.2.8 requirements.txt with the lab inventory's python_env
edits, pins and constraints. uv runs with --compile-bytecode, as the role runs
it, so that both installers leave the same .pyc files (pip compiles by default). Each run makes two fresh
venvs with the same interpreter and installs the set into one with that venv's pip and into
the other with uv (the pinned version, installed once from the mirror into a tool venv), each
with its own empty cache directory, the mirror as the only index and every pip/uv config file
and PIP_*/UV_* variable of the caller ignored. The order alternates between runs. Only the
install command is timed (venv creation is not). After each run both venvs must hold the same
`pip freeze --all`, otherwise the run is reported as a mismatch and the script exits non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "roles" / "python_env" / "defaults" / "main.yml"


def yaml_scalar(text: str, key: str) -> str:
    match = re.search(rf"^{key}:\s*\"?([^\"\n]+)\"?\s*$", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"{DEFAULTS}: no {key}")
    return match.group(1).strip()


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any PIP_*/UV_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV", "CONDA_"))}
    env.update(extra)
    return env


def run(argv: list[str], env: dict[str, str], log: Path) -> float:
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{log.read_text()[-4000:]}")
    return elapsed


def freeze(venv: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each installer (alternating order); default 3")
    parser.add_argument("--python", default="/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
                        help="interpreter the venvs are made from; default /usr/bin/python3")
    parser.add_argument("--mirror", default=os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/"),
                        help="mirror base URL; default $LAB_MIRROR_URL or http://127.0.0.1:18080")
    parser.add_argument("--workdir", default=None, help="where the venvs and caches go (default: a temporary directory)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    index = f"{args.mirror}/repository/pypi-proxy/simple/"
    defaults = DEFAULTS.read_text()
    uv_version = yaml_scalar(defaults, "python_env_uv_version")
    # What the lab's GPU nodes install: v0.2.8's requirements.txt with the lab's python_env edits.
    sys.path.insert(0, str(ROOT / "lab"))
    import mirror
    node_requirements, constraints = mirror.lab_node_requirements()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="pip-vs-uv-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "constraints.txt").write_text("\n".join(constraints) + "\n")
    (work / "requirements.txt").write_text("\n".join(node_requirements) + "\n")
    req_args = ["-c", str(work / "constraints.txt"), "-r", str(work / "requirements.txt")]
    base = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": index, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1", "PIP_PROGRESS_BAR": "off", "PIP_ROOT_USER_ACTION": "ignore", "PYTHONNOUSERSITE": "1",
            "UV_NO_CONFIG": "1", "UV_INDEX_URL": index, "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"}

    # uv itself, pinned, from the mirror (not timed).
    tool = work / "uv-tool"
    run([args.python, "-m", "venv", str(tool)], clean_env(base), work / "uv-tool.log")
    run([str(tool / "bin" / "python"), "-m", "pip", "install", f"uv=={uv_version}"],
        clean_env({**base, "PIP_CACHE_DIR": str(work / "uv-tool-cache")}), work / "uv-tool-install.log")
    uv = tool / "bin" / "uv"
    uv_reported = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    py_version = subprocess.run([args.python, "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True, check=True).stdout.strip()

    load_before = os.getloadavg()[0]
    rows = []
    for i in range(args.runs):
        order = ["pip", "uv"] if i % 2 == 0 else ["uv", "pip"]
        row: dict[str, object] = {"run": i + 1, "order": "/".join(order)}
        venvs = {}
        for installer in order:
            venv = work / f"run{i + 1}-{installer}"
            cache = work / f"run{i + 1}-{installer}-cache"
            for path in (venv, cache):
                shutil.rmtree(path, ignore_errors=True)
            run([args.python, "-m", "venv", str(venv)], clean_env(base), work / f"run{i + 1}-{installer}-venv.log")
            log = work / f"run{i + 1}-{installer}.log"
            if installer == "pip":
                argv = [str(venv / "bin" / "python"), "-m", "pip", "install", *req_args]
                env = clean_env({**base, "PIP_CACHE_DIR": str(cache)})
            else:
                # As the role runs it: bytecode compiled at install time, as pip does by default.
                argv = [str(uv), "pip", "install", "--compile-bytecode", "--python", str(venv / "bin" / "python"),
                        *req_args]
                env = clean_env({**base, "UV_CACHE_DIR": str(cache)})
            row[installer] = run(argv, env, log)
            venvs[installer] = venv
        frozen = {name: freeze(venv, clean_env(base)) for name, venv in venvs.items()}
        row["packages"] = len(frozen["pip"])
        row["same_packages"] = frozen["pip"] == frozen["uv"]
        row["ratio"] = row["pip"] / row["uv"]
        rows.append(row)
        print(f"run {i + 1} ({row['order']}): pip {row['pip']:.1f} s, uv {row['uv']:.1f} s", flush=True)

    pip_times = [float(r["pip"]) for r in rows]
    uv_times = [float(r["uv"]) for r in rows]
    machine = {
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform()) if hasattr(
            platform, "freedesktop_os_release") else platform.platform(),
        "cpus": os.cpu_count(),
        "python": f"{args.python} ({py_version})",
        "uv": uv_reported,
        "mirror": index,
        # Other work on the machine skews the figures: the 1-minute load average before and after.
        "load": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
    }
    print()
    for key, value in machine.items():
        print(f"{key + ':':8} {value}")
    print(f"{'set:':8} v0.2.8 requirements.txt with the lab's python_env edits, pins and constraints {constraints}")
    print()
    print("| run | order | pip (s) | uv (s) | pip/uv | packages | same set |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['order']} | {r['pip']:.1f} | {r['uv']:.1f} | {r['ratio']:.1f}x | {r['packages']} | "
              f"{'yes' if r['same_packages'] else 'NO'} |")
    print(f"| median | | {statistics.median(pip_times):.1f} | {statistics.median(uv_times):.1f} | "
          f"{statistics.median(pip_times) / statistics.median(uv_times):.1f}x | | |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["same_packages"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
