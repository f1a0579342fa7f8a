#!/usr/bin/env python3
"""Model pulls: the models role's model_pull module against a plain copy of the same bytes and a
plain `git lfs clone`, and the site-cache fan-out against N nodes pulling directly, side by side.

Run on the host against the running lab mirror (stdlib only), after publishing the bench model:

    .venv/bin/python lab/mirror.py bench-model --size-mb 512
    .venv/bin/python lab/bench/models_pull.py [--runs 3] [--size-mb 512] [--nodes 4] [--json out.json]

The data is models/bench/bulk-<N>m.git on the mirror (4 LFS files of N/4 MiB of random bytes,
config.json, README.md) and the same files as plain downloads under raw-hosted/bench/bulk-<N>m/.
The revision is the repository's HEAD (git ls-remote); expected_size is the sum of the plain files.

Pull throughput (each run, every method into a fresh directory; the order alternates between runs):
  module       `ansible localhost -c local -m model_pull` (ANSIBLE_LIBRARY=roles/models/library,
               ANSIBLE_MODULE_UTILS=roles/models/module_utils): metadata, the LFS objects from the
               batch API's URLs (hashed while written), hard links, sha256 of every other file; it must report outcome=pulled with every object from the mirror.
  copy         the plain files with one `curl --parallel --parallel-max 4` (4 at a time, as git-lfs
               transfers 4 files), timed alone ("copy"), then checked against SHA256SUMS twice, with
               `openssl dgst -sha256` ("copy+openssl", the comparable work: the module verifies every
               byte too, with OpenSSL's sha256 through hashlib) and with `sha256sum -c` (coreutils).
  lfs-clone    `git lfs clone` of the same repository (what the POC did).
  Then Ansible's fixed cost on the converged module root: the module again with verify=full (a
  no-op that still hashes every file), with verify=size, and `ansible -m ping`.
  Disk use: `du -sb` of the result (root + store for the module; hard links count once).

Cache fan-out (each run; the order of the two cases alternates):
  direct       N module runs at once (N separate root/store pairs = N simulated nodes), all from the mirror.
  cache        one module run from the mirror into a cache store, served read-only by an rsync daemon
               that this script starts on a free loopback port (the role's models-rsyncd.conf.j2
               settings), then N module runs at once with cache_url=rsync://127.0.0.1:<port>/models;
               each must report every object from the cache and none from the mirror.
  For both: the wall time, and the bytes the mirror served for the bench repository during the case
  (the response sizes of the lines nginx appended to its access log, this model's paths only, so
  other users of the shared mirror are not counted).

Prints a Markdown table of the medians and ratios and, with --json, writes every raw timing.
Every temporary directory and the rsync daemon are removed at the end, also on failure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "roles" / "models" / "library"
MODULE_UTILS = ROOT / "roles" / "models" / "module_utils"
ACCESS_LOG = ROOT / ".lab" / "mirror" / "log" / "nginx-access.log"
MIB = 1024 * 1024
# "GET /path HTTP/1.1" 200 1234  (nginx's combined format)
LOG_LINE = re.compile(r'"[A-Z]+ (\S+) [^"]*" (\d{3}) (\d+|-)')


# --------------------------------------------------------------------------- helpers

def run(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Run argv to completion (output to log); the elapsed seconds. Fails the script on rc != 0."""
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{log.read_text()[-4000:]}")
    return elapsed


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def du_bytes(*paths: Path) -> int:
    """`du -sb` over all paths in one call, so a hard-linked file counts once."""
    out = subprocess.run(["du", "-sbc", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the rsync daemon exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the rsync daemon did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


class MirrorLog:
    """Bytes the mirror served for one model's paths, from the lines appended to nginx's access log."""

    def __init__(self, path: Path, prefixes: tuple[str, ...]):
        self.path, self.prefixes = path, prefixes
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def served(self) -> dict[str, int]:
        """{"bytes", "requests", "lfs_objects"} since the last mark (whole lines only)."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        data = data[:data.rfind(b"\n") + 1]
        total = requests = objects = 0
        for line in data.decode("utf-8", "replace").splitlines():
            match = LOG_LINE.search(line)
            if not match or not match.group(1).startswith(self.prefixes):
                continue
            requests += 1
            if match.group(3) != "-":
                total += int(match.group(3))
            if "/info/lfs/objects/storage/" in match.group(1) and match.group(2) == "200":
                objects += 1
        return {"bytes": total, "requests": requests, "lfs_objects": objects}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.name = f"bulk-{args.size_mb}m"
        self.url = f"{args.mirror}/repository/models/bench/{self.name}.git"
        self.raw = f"{args.mirror}/repository/raw-hosted/bench/{self.name}"
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.mirror_log = MirrorLog(Path(args.access_log), (
            f"/repository/models/bench/{self.name}.git/", f"/repository/raw-hosted/bench/{self.name}/",
            f"/hf/bench/{self.name}"))
        ansible = Path(sys.executable).parent / "ansible"
        self.ansible = str(ansible) if ansible.exists() else (shutil.which("ansible") or "ansible")
        self.ansible_env = dict(
            os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LIBRARY=str(LIBRARY),
            ANSIBLE_MODULE_UTILS=str(MODULE_UTILS), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0")
        self.git_env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        self.rsyncd: subprocess.Popen | None = None
        self.cache_port = 0

    # ------------------------------------------------------------------ set-up
    def discover(self) -> None:
        proc = subprocess.run(["git", "ls-remote", self.url, "HEAD"], capture_output=True, text=True,
                              env=self.git_env, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise SystemExit(f"{self.url} is not on the mirror ({proc.stderr.strip()[-300:]}); publish it with\n"
                             f"    .venv/bin/python lab/mirror.py bench-model --size-mb {self.args.size_mb}")
        self.revision = proc.stdout.split()[0]
        with urllib.request.urlopen(f"{self.raw}/SHA256SUMS", timeout=30) as response:
            sums = response.read().decode()
        self.files = {line.split(None, 1)[1].strip(): line.split()[0] for line in sums.splitlines() if line.strip()}
        self.sizes = {}
        for rel in self.files:
            request = urllib.request.Request(f"{self.raw}/{rel}", method="HEAD")
            with urllib.request.urlopen(request, timeout=30) as response:
                self.sizes[rel] = int(response.headers["Content-Length"])
        self.total = sum(self.sizes.values())

    def start_rsyncd(self) -> None:
        """A read-only rsync daemon on loopback serving work/cache/store, configured like the role's."""
        self.cache_store = self.work / "cache" / "store"
        self.cache_port = free_port()
        conf = self.work / "rsyncd.conf"
        conf.write_text(
            "# as roles/models/templates/models-rsyncd.conf.j2\n"
            "use chroot = no\nread only = yes\nlist = yes\nreverse lookup = no\n"
            f"pid file = {self.work / 'rsyncd.pid'}\n\n"
            f"[models]\n    path = {self.cache_store}\n"
            "    comment = chatfleet model store (verified revisions only)\n"
            "    exclude = .staging-*/ .git/\n")
        log = self.logs / "rsyncd.log"
        self.rsyncd = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", f"--config={conf}", "--address=127.0.0.1",
             f"--port={self.cache_port}", f"--log-file={log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.cache_port, self.rsyncd, log)

    def stop_rsyncd(self) -> None:
        if self.rsyncd and self.rsyncd.poll() is None:
            self.rsyncd.terminate()
            try:
                self.rsyncd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.rsyncd.kill()
                self.rsyncd.wait()

    # ------------------------------------------------------------------ the module through Ansible
    def module_argv(self, node: Path, **extra: object) -> list[str]:
        params = {"name": self.name, "url": self.url, "revision": self.revision,
                  "dest": str(node / "root" / self.name), "store": str(node / "store"),
                  "expected_size": self.total, **extra}
        return [self.ansible, "localhost", "-i", "localhost,", "-c", "local",
                "-e", f"ansible_python_interpreter={self.args.python}",
                "-m", "model_pull", "-a", json.dumps(params)]

    def ping_argv(self) -> list[str]:
        return [self.ansible, "localhost", "-i", "localhost,", "-c", "local",
                "-e", f"ansible_python_interpreter={self.args.python}", "-m", "ping"]

    @staticmethod
    def module_result(log: Path) -> dict:
        text = log.read_text()
        try:
            # The minimal callback: `localhost | CHANGED => {...}`.
            result = json.loads(text[text.index("=> {") + 3:])
        except ValueError:
            raise SystemExit(f"no module result in {log}:\n{text[-3000:]}") from None
        if result.get("failed"):
            raise SystemExit(f"the module failed ({log}): {result.get('msg')}")
        return result

    def expect(self, result: dict, outcome: str, source: str | None, what: str) -> None:
        if result.get("outcome") != outcome:
            raise SystemExit(f"{what}: outcome {result.get('outcome')!r}, expected {outcome!r}: {result}")
        if source is not None:
            objects = result.get("objects", {})
            want = {"local": 0, "cache": 0, "mirror": 0, source: len([f for f in self.files if f.endswith(".bin")])}
            if objects != want:
                raise SystemExit(f"{what}: objects {objects}, expected {want}")

    def pull(self, node: Path, tag: str, source: str | None = "mirror", outcome: str = "pulled",
             **extra: object) -> float:
        log = self.logs / f"{tag}.log"
        elapsed = run(self.module_argv(node, **extra), log, env=self.ansible_env)
        self.expect(self.module_result(log), outcome, source, tag)
        return elapsed

    def pull_many(self, nodes: list[Path], tag: str, source: str, **extra: object) -> tuple[float, list[float]]:
        """Start one module run per node at once; (wall seconds, per-node seconds)."""
        procs = []
        start = time.monotonic()
        try:
            for i, node in enumerate(nodes):
                log = self.logs / f"{tag}-node{i + 1}.log"
                handle = log.open("w")
                procs.append((subprocess.Popen(self.module_argv(node, **extra), env=self.ansible_env,
                                               stdout=handle, stderr=subprocess.STDOUT), handle, log))
            pending = list(range(len(procs)))
            ends: dict[int, float] = {}
            while pending:
                for i in list(pending):
                    if procs[i][0].poll() is not None:
                        ends[i] = time.monotonic() - start
                        pending.remove(i)
                time.sleep(0.05)
        finally:
            for proc, handle, _ in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                handle.close()
        wall = time.monotonic() - start
        for i, (proc, _, log) in enumerate(procs):
            if proc.returncode != 0:
                raise SystemExit(f"{tag} node {i + 1} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
            self.expect(self.module_result(log), "pulled", source, f"{tag} node {i + 1}")
        return wall, [ends[i] for i in range(len(procs))]

    # ------------------------------------------------------------------ part 1: one pull
    def method_module(self, i: int) -> dict:
        node = fresh(self.work / f"run{i}-module")
        self.mirror_log.mark()
        seconds = self.pull(node, f"run{i}-module")
        served = self.mirror_log.served()
        disk = du_bytes(node / "root", node / "store")
        # Ansible's fixed cost on the converged root (no bytes from the mirror).
        overhead = {}
        order = ["noop-full", "noop-size", "ping"]
        for what in (order if i % 2 else order[::-1]):
            if what == "ping":
                overhead[what] = run(self.ping_argv(), self.logs / f"run{i}-ping.log", env=self.ansible_env)
            else:
                overhead[what] = self.pull(node, f"run{i}-{what}", source=None, outcome="none",
                                           verify=what.split("-")[1])
                if self.module_result(self.logs / f"run{i}-{what}.log").get("changed") is not False:
                    raise SystemExit(f"run {i}: the {what} rerun reported a change")
        shutil.rmtree(node)
        return {"seconds": seconds, "less_ping": seconds - overhead["ping"], "disk_bytes": disk, "mirror": served,
                **overhead}

    def method_copy(self, i: int) -> dict:
        node = fresh(self.work / f"run{i}-copy")
        argv = ["curl", "-sSf", "--parallel", "--parallel-max", "4", "--retry", "2"]
        for rel in [*self.files, "SHA256SUMS"]:
            argv += ["-o", str(node / rel), f"{self.raw}/{rel}"]
        self.mirror_log.mark()
        copy = run(argv, self.logs / f"run{i}-copy.log")
        served = self.mirror_log.served()
        # Two ways to check the copy against SHA256SUMS: coreutils' sha256sum (what an admin types;
        # coreutils 9.1 does not use the CPU's SHA extensions) and OpenSSL (which does, as Python's
        # hashlib in the module and Go's in git-lfs do). Both read the files from the page cache.
        verify = {}
        for tool in (["sha256sum", "openssl"] if i % 2 else ["openssl", "sha256sum"]):
            log = self.logs / f"run{i}-copy-{tool}.log"
            if tool == "sha256sum":
                verify[tool] = run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"], log, cwd=node)
            else:
                verify[tool] = run(["openssl", "dgst", "-sha256", "-r", *self.files], log, cwd=node)
                got = {line.split()[1].lstrip("*"): line.split()[0] for line in log.read_text().splitlines() if line}
                if got != self.files:
                    raise SystemExit(f"run {i}: the copy does not match SHA256SUMS ({log})")
        disk = du_bytes(node)
        shutil.rmtree(node)
        return {"copy": copy, "verify_sha256sum": verify["sha256sum"], "verify_openssl": verify["openssl"],
                "seconds": copy + verify["openssl"], "seconds_sha256sum": copy + verify["sha256sum"],
                "disk_bytes": disk, "mirror": served}

    def method_clone(self, i: int) -> dict:
        node = fresh(self.work / f"run{i}-clone")
        self.mirror_log.mark()
        seconds = run(["git", "lfs", "clone", self.url, str(node / self.name)], self.logs / f"run{i}-clone.log",
                      env=self.git_env)
        served = self.mirror_log.served()
        head = subprocess.run(["git", "-C", str(node / self.name), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        for rel, size in self.sizes.items():
            path = node / self.name / rel
            if head != self.revision or not path.is_file() or path.stat().st_size != size:
                raise SystemExit(f"run {i}: git lfs clone left {path} wrong (HEAD {head})")
        disk = du_bytes(node)
        shutil.rmtree(node)
        return {"seconds": seconds, "disk_bytes": disk, "mirror": served}

    # ------------------------------------------------------------------ part 2: fan-out
    def case_direct(self, i: int) -> dict:
        nodes = [fresh(self.work / f"run{i}-direct" / f"node{n + 1}") for n in range(self.args.nodes)]
        self.mirror_log.mark()
        wall, per_node = self.pull_many(nodes, f"run{i}-direct", "mirror")
        served = self.mirror_log.served()
        shutil.rmtree(self.work / f"run{i}-direct")
        return {"seconds": wall, "per_node": per_node, "mirror": served}

    def case_cache(self, i: int) -> dict:
        cache = self.work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(mode=0o755)
        nodes = [fresh(self.work / f"run{i}-fanout" / f"node{n + 1}") for n in range(self.args.nodes)]
        self.mirror_log.mark()
        cache_pull = self.pull(cache, f"run{i}-cache-pull")
        wall, per_node = self.pull_many(nodes, f"run{i}-fanout", "cache",
                                        cache_url=f"rsync://127.0.0.1:{self.cache_port}/models")
        served = self.mirror_log.served()
        shutil.rmtree(self.work / f"run{i}-fanout")
        shutil.rmtree(cache)
        return {"seconds": cache_pull + wall, "cache_pull": cache_pull, "fanout": wall, "per_node": per_node,
                "mirror": served}


# --------------------------------------------------------------------------- report

def med(values: list[float]) -> float:
    return statistics.median(values)


def alternating_run(measures: dict, run: int) -> dict:
    """One run of every measure, in order on odd runs and reversed on even ones; their results by name."""
    order = list(measures) if run % 2 else list(measures)[::-1]
    row: dict = {"run": run, "order": "/".join(order)}
    for name in order:
        row[name] = measures[name](run)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of each method and case (alternating order); default 3")
    parser.add_argument("--size-mb", type=int, default=512, help="the bench model bench/bulk-<N>m; default 512")
    parser.add_argument("--nodes", type=int, default=4, help="simulated nodes in the fan-out; default 4")
    parser.add_argument("--mirror", default=os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/"),
                        help="mirror base URL; default $LAB_MIRROR_URL or http://127.0.0.1:18080")
    parser.add_argument("--access-log", default=str(ACCESS_LOG),
                        help=f"the mirror's nginx access log; default {ACCESS_LOG}")
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="interpreter the module runs with; default /usr/bin/python3")
    parser.add_argument("--skip-fanout", action="store_true", help="measure only the single pull")
    parser.add_argument("--workdir", default=None, help="where the pulls go (default: a temporary directory, removed)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write every raw timing to this JSON file")
    args = parser.parse_args()
    for tool in ("git", "git-lfs", "curl", "openssl", "sha256sum", "du", "rsync"):
        if not shutil.which(tool):
            package = "coreutils" if tool in ("sha256sum", "du") else tool
            raise SystemExit(f"{tool} is missing (apt-get install -y {package})")
    if not Path(args.access_log).exists():
        raise SystemExit(f"no access log at {args.access_log}: is the lab mirror up?")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="models-pull-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # The rsync daemon drops root for nobody: the cache store below must be reachable.
    work.chmod(0o755)
    bench = Bench(args, work)
    load_before = os.getloadavg()[0]
    pulls: list[dict] = []
    fanouts: list[dict] = []
    try:
        bench.discover()
        print(f"bench/{bench.name} @ {bench.revision[:12]}: {len(bench.files)} files, {bench.total} bytes; "
              f"work in {work}", flush=True)
        if not args.skip_fanout:
            bench.start_rsyncd()
        methods = {"module": bench.method_module, "copy": bench.method_copy, "lfs-clone": bench.method_clone}
        for i in range(1, args.runs + 1):
            row = alternating_run(methods, i)
            pulls.append(row)
            print(f"pull run {i} ({row['order']}): module {row['module']['seconds']:.1f} s, "
                  f"copy {row['copy']['copy']:.1f} s + verify {row['copy']['verify_openssl']:.1f} s (openssl) / "
                  f"{row['copy']['verify_sha256sum']:.1f} s (sha256sum), "
                  f"lfs-clone {row['lfs-clone']['seconds']:.1f} s; no-op full {row['module']['noop-full']:.1f} s, "
                  f"size {row['module']['noop-size']:.1f} s, ping {row['module']['ping']:.1f} s", flush=True)
            if args.skip_fanout:
                continue
            row = alternating_run({"direct": bench.case_direct, "cache": bench.case_cache}, i)
            fanouts.append(row)
            print(f"fan-out run {i} ({row['order']}): direct {row['direct']['seconds']:.1f} s "
                  f"({row['direct']['mirror']['bytes'] / MIB:.0f} MiB from the mirror), cache "
                  f"{row['cache']['cache_pull']:.1f} + {row['cache']['fanout']:.1f} s "
                  f"({row['cache']['mirror']['bytes'] / MIB:.0f} MiB from the mirror)", flush=True)
    finally:
        bench.stop_rsyncd()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    lfs_env = subprocess.run(["git", "lfs", "env"], capture_output=True, text=True, check=False).stdout
    transfers = re.search(r"ConcurrentTransfers=(\d+)", lfs_env)
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    machine = {
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform()),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / MIB, 1) if mem else None,
        "git": version(["git", "--version"]),
        "git_lfs": version(["git", "lfs", "version"])
        + (f", lfs.concurrenttransfers {transfers.group(1)}" if transfers else ""),
        "curl": version(["curl", "--version"]).split(" (")[0],
        "openssl": version(["openssl", "version"]),
        "sha256sum": version(["sha256sum", "--version"]),
        "rsync": version(["rsync", "--version"]),
        "ansible": version([bench.ansible, "--version"]),
        "module_python": version([args.python, "--version"]),
        "mirror": bench.url,
        # Other work on the machine skews the figures: the 1-minute load average before and after.
        "load": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
    }
    size_mib = bench.total / MIB

    def stat(rows: list[dict], method: str, key: str = "seconds") -> float:
        return med([float(r[method][key]) for r in rows])

    print()
    for key, value in machine.items():
        print(f"{key + ':':15} {value}")
    print(f"{'model:':15} bench/{bench.name} @ {bench.revision}, {len(bench.files)} files, {bench.total} bytes "
          f"({size_mib:.1f} MiB), runs {args.runs}")
    print()
    print("Pull of one model (medians; time ratios against the plain copy verified with openssl, and unverified;")
    print("disk = du -sb of the result):")
    print()
    print("| method | median (s) | MiB/s | vs copy+openssl | vs copy | served by mirror (MiB) | disk (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    base_v, base_c = stat(pulls, "copy"), stat(pulls, "copy", "copy")
    lines = [("plain copy (curl x4)", base_c, "copy"), ("plain copy + openssl dgst -sha256", base_v, "copy"),
             ("plain copy + sha256sum -c", stat(pulls, "copy", "seconds_sha256sum"), "copy"),
             ("model_pull module (Ansible)", stat(pulls, "module"), "module"),
             ("model_pull module, less `ansible -m ping`", stat(pulls, "module", "less_ping"), "module"),
             ("git lfs clone", stat(pulls, "lfs-clone"), "lfs-clone")]
    for label, seconds, method in lines:
        served = med([r[method]["mirror"]["bytes"] for r in pulls]) / MIB
        disk = stat(pulls, method, "disk_bytes") / MIB
        print(f"| {label} | {seconds:.2f} | {size_mib / seconds:.0f} | {seconds / base_v:.2f}x | "
              f"{seconds / base_c:.2f}x | {served:.1f} | {disk:.1f} |")
    print()
    print("Ansible's fixed cost on the converged root (medians; nothing is fetched):")
    print()
    print("| rerun | median (s) |")
    print("| --- | ---: |")
    for key, label in (("noop-full", "module, verify=full (hashes every file)"),
                       ("noop-size", "module, verify=size"), ("ping", "ansible -m ping")):
        print(f"| {label} | {stat(pulls, 'module', key):.2f} |")
    print()
    print("| run | order | module (s) | copy (s) | then openssl (s) | or sha256sum (s) | lfs-clone (s) "
          "| no-op full (s) | no-op size (s) | ping (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in pulls:
        print(f"| {r['run']} | {r['order']} | {r['module']['seconds']:.2f} | {r['copy']['copy']:.2f} | "
              f"{r['copy']['verify_openssl']:.2f} | {r['copy']['verify_sha256sum']:.2f} | "
              f"{r['lfs-clone']['seconds']:.2f} | {r['module']['noop-full']:.2f} | "
              f"{r['module']['noop-size']:.2f} | {r['module']['ping']:.2f} |")
    if fanouts:
        n = args.nodes
        print()
        print(f"Fan-out to {n} nodes on this host (medians; mirror bytes = this model's lines in the access log):")
        print()
        print("| case | wall (s) | served by mirror (MiB) | LFS object downloads | mirror bytes vs direct |")
        print("| --- | ---: | ---: | ---: | ---: |")
        direct_bytes = med([r["direct"]["mirror"]["bytes"] for r in fanouts])
        for label, seconds, case in ((f"direct: {n} nodes from the mirror", stat(fanouts, "direct"), "direct"),
                                     ("cache: 1 pull into the cache", stat(fanouts, "cache", "cache_pull"), None),
                                     (f"cache: then {n} nodes from rsync", stat(fanouts, "cache", "fanout"), None),
                                     ("cache: total", stat(fanouts, "cache"), "cache")):
            if case:
                served = med([r[case]["mirror"]["bytes"] for r in fanouts])
                objects = med([r[case]["mirror"]["lfs_objects"] for r in fanouts])
                print(f"| {label} | {seconds:.2f} | {served / MIB:.1f} | {objects:.0f} | "
                      f"{served / direct_bytes:.2f}x |")
            else:
                print(f"| {label} | {seconds:.2f} | | | |")
        print(f"| wall time cache total / direct | {stat(fanouts, 'cache') / stat(fanouts, 'direct'):.2f}x | | | |")
        print()
        print("| run | order | direct (s) | cache pull (s) | fan-out (s) | cache total (s) | direct MiB | cache MiB |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in fanouts:
            print(f"| {r['run']} | {r['order']} | {r['direct']['seconds']:.2f} | {r['cache']['cache_pull']:.2f} | "
                  f"{r['cache']['fanout']:.2f} | {r['cache']['seconds']:.2f} | "
                  f"{r['direct']['mirror']['bytes'] / MIB:.1f} | {r['cache']['mirror']['bytes'] / MIB:.1f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "machine": machine,
            "model": {"name": bench.name, "url": bench.url, "revision": bench.revision, "bytes": bench.total,
                      "files": bench.sizes},
            "params": {"runs": args.runs, "size_mb": args.size_mb, "nodes": args.nodes},
            "pull": pulls, "fanout": fanouts}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
