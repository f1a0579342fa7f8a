#!/usr/bin/env python3
"""What one node runs, for playbooks/status.yml (read-only; Python 3.6+, stdlib only).

  chatfleet-node-status --chatchat-root DIR --env-path DIR --models-root DIR --services-record FILE

Prints one JSON object: the GPU facts gpu_preflight recorded (/etc/ansible/facts.d/gpu.fact), the
active Chatchat release (<root>/current), fschat's version in the env, each model's revision (the
models role's links), and the state of every unit in the services record plus milvus.service where
it exists.

It does not judge fschat's vllm_worker.py patch: the text alone cannot tell (0.2.35 and 0.2.36 hold
the same `stop=list(stop),` as the affected releases but fixed the cause elsewhere). status.yml
takes that verdict from the fschat_patch role (tasks_from inspect.yml), as a rollout applies it.
"""
import argparse
import glob
import json
import os
import subprocess
import sys


def gpu_facts(path="/etc/ansible/facts.d/gpu.fact"):
    try:
        with open(path) as handle:
            facts = json.load(handle)
    except (OSError, ValueError):
        return None
    first = (facts.get("gpus") or [{}])[0]
    return {"count": facts.get("gpu_count"), "model": facts.get("gpu_model"), "name": first.get("name"),
            "memory_mib": facts.get("gpu_memory_mib"), "driver": facts.get("driver_version"),
            "cuda": facts.get("cuda_version")}


def fschat(env_path):
    found = sorted(glob.glob(os.path.join(env_path, "lib", "python*", "site-packages", "fschat-*.dist-info")))
    if not found:
        return {"version": None, "patch": "fschat not installed"}
    return {"version": os.path.basename(found[-1])[len("fschat-"):-len(".dist-info")]}


def models(root):
    revisions = {}
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return revisions
    for name in names:
        path = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        revisions[name] = os.path.basename(os.readlink(path)) if os.path.islink(path) else "unmanaged directory"
    return revisions


def unit_states(record_path):
    units = []
    try:
        with open(record_path) as handle:
            units = [unit["name"] for unit in json.load(handle)["units"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if os.path.exists("/etc/systemd/system/milvus.service") or os.path.exists("/lib/systemd/system/milvus.service"):
        units.append("milvus")
    if not units:
        return {}
    out = subprocess.run(["systemctl", "is-active"] + [unit + ".service" for unit in units],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout.split()
    return dict(zip(units, out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chatchat-root", required=True)
    parser.add_argument("--env-path", required=True)
    parser.add_argument("--models-root", required=True)
    parser.add_argument("--services-record", required=True)
    args = parser.parse_args(argv)
    current = os.path.join(args.chatchat_root, "current")
    status = {
        "gpu": gpu_facts(),
        "release": os.path.basename(os.readlink(current)) if os.path.islink(current) else None,
        "fschat": fschat(args.env_path),
        "models": models(args.models_root),
        "services": unit_states(args.services_record),
    }
    json.dump(status, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
