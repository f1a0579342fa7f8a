#!/usr/bin/env python3
"""Backup and restore times on the converged lab (`make lab`), for the lab's own data and with a
generated Milvus collection of --vectors vectors of --dim floats added:

    .venv/bin/python lab/bench/backup_restore.py [--vectors 100000] [--dim 768]

For each data set: `chatfleet backup` and `chatfleet restore --yes` over the lab (wall time of the
tool), and from lab-l40-1 (the lab's Milvus host and a GPU node): how long its writers (Chatchat's
API, Milvus) were down, the copy's seconds, the data and archive sizes. The generated collection is
inserted as root through the milvus role's admin client on lab-l40-1 and dropped at the end.
Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NODE = "lab-l40-1"
CLIENT_PYTHON = "/opt/chatfleet/milvus-client/bin/python"
COLLECTION = "bench_backup_vectors"
DOWN = re.compile(rf"{NODE}: restored .*?writers down ([0-9.]+) s")

# Run inside the node by the admin client's Python: create, fill and flush (or drop) the collection.
FILL = r"""
import sys, numpy as np
from pymilvus import connections, utility, Collection, CollectionSchema, FieldSchema, DataType
port, password, action, count, dim = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
connections.connect(host="127.0.0.1", port=port, user="root", password=password, timeout=60)
if utility.has_collection("%s"):
    utility.drop_collection("%s")
if action == "fill":
    fields = [FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("v", DataType.FLOAT_VECTOR, dim=dim)]
    col = Collection("%s", CollectionSchema(fields))
    rng = np.random.default_rng(7)
    for start in range(0, count, 10000):
        n = min(10000, count - start)
        col.insert([list(range(start, start + n)), rng.random((n, dim), dtype=np.float32)])
    col.flush()
    print(col.num_entities)
""" % (COLLECTION, COLLECTION, COLLECTION)


def sh(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, cwd=ROOT, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def tool(*argv: str) -> tuple[float, str]:
    started = time.monotonic()
    out = sh(str(Path(sys.executable).parent / "chatfleet"), *argv, "-i", "inventories/lab", "--artifacts", "/tmp/bench-backup")
    return time.monotonic() - started, out


def du(path: str) -> int:
    return int(sh("docker", "exec", NODE, "du", "-sb", path).split()[0])


def measure(label: str) -> str:
    backup_s, _ = tool("backup")
    listing = sh("docker", "exec", NODE, "sh", "-c", f"ls /var/backups/chatfleet/{NODE}-*.manifest.json").split()
    manifest = json.loads(sh("docker", "exec", NODE, "cat", sorted(listing)[-1]))
    restore_s, out = tool("restore", "--yes")
    restore_down = DOWN.search(" ".join(out.split()))
    return (f"| {label} | {du('/var/lib/milvus') / 2**20:.0f} MiB + {du('/var/lib/chatchat') / 2**20:.1f} MiB "
            f"| {manifest['archive_size'] / 2**20:.0f} MiB | {backup_s:.0f} s | {float(manifest['writers_down_s']):.1f} s "
            f"({float(manifest['snapshot_s']):.1f} s copy) | {restore_s:.0f} s "
            f"| {restore_down.group(1) if restore_down else '?'} s |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    settings = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/milvus.yml").read_text())
    port, password = str(settings["milvus_port"]), settings["milvus_root_password"]
    rows = [measure("the lab's data")]
    started = time.monotonic()
    count = sh("docker", "exec", "-i", NODE, CLIENT_PYTHON, "-", port, password, "fill", str(args.vectors), str(args.dim),
               stdin=FILL).strip()
    print(f"bench: inserted {count} vectors in {time.monotonic() - started:.0f} s", file=sys.stderr)
    try:
        rows.append(measure(f"plus {int(count):,} vectors of {args.dim} floats"))
    finally:
        sh("docker", "exec", "-i", NODE, CLIENT_PYTHON, "-", port, password, "drop", "0", "0", stdin=FILL)
    print("| data | Milvus + Chatchat data on lab-l40-1 | archive | `chatfleet backup` | writers down (backup) "
          "| `chatfleet restore --yes` | writers down (restore) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
