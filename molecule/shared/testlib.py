"""Shared helpers for the testinfra tests of every molecule scenario.

The shared molecule config puts this directory on PYTHONPATH for the verifier, so a scenario's
tests do `from testlib import run_role, run_playbook, docker_exec`.

Tests use these to run a role (or a whole playbook) again through ansible-playbook against the
scenario's own nodes, with other inputs: a second run that must report changed=0, check mode,
and bad input that must stop before any change.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("CHATFLEET_ROOT", Path(__file__).resolve().parents[2]))
MIRROR_URL = os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/")
PYPI_INDEX_URL = f"{MIRROR_URL}/repository/pypi-proxy/simple/"
RAW_URL = f"{MIRROR_URL}/repository/raw-hosted/"

_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)",
    re.MULTILINE,
)


class PlaybookRun:
    """The outcome of one ansible-playbook run: exit code, output, the per-host recap and the failed
    tasks (callback_plugins/failed_tasks.py: host, task name, message; ignored failures marked)."""

    def __init__(self, proc: subprocess.CompletedProcess, failures: list[dict] | None = None):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap = {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
                      for m in _RECAP.finditer(self.output)}
        self.failures = [f for f in failures or [] if not f["ignored"]]

    def failure(self, host: str | None = None) -> dict:
        """The failed task that stopped `host` (or the only host that failed): {"task", "msg", ...},
        its message on one line. Fails the test when no task failed there."""
        failed = [f for f in self.failures if host in (None, f["host"])]
        assert failed, f"no failed task{' on ' + host if host else ''}: {self!r}"
        assert host or len({f["host"] for f in failed}) == 1, f"several hosts failed, name one: {failed}"
        last = dict(failed[-1])
        last["msg"] = " ".join(" ".join([last["msg"], *last["items"]]).split())
        return last

    @property
    def flat(self) -> str:
        """The output on one line: the yaml callback wraps long messages."""
        return " ".join(self.output.split())

    def _hosts(self) -> dict:
        # A play whose pattern matched no host exits 0 with no recap: "changed=0" would be vacuous.
        assert self.recap, f"no PLAY RECAP in the output (did the play match any host?)\n{self.output[-3000:]}"
        return self.recap

    @property
    def changed(self) -> int:
        """Changed tasks over all hosts; fails the test when no host ran."""
        return sum(r["changed"] for r in self._hosts().values())

    @property
    def failed(self) -> int:
        """Failed or unreachable hosts' counts; fails the test when no host ran."""
        return sum(r["failed"] + r["unreachable"] for r in self._hosts().values())

    def __repr__(self) -> str:  # shown by pytest when an assertion on a run fails
        return f"PlaybookRun(rc={self.rc}, recap={self.recap})\n{self.output[-6000:]}"


def task_results(run: PlaybookRun, task: str) -> list[str]:
    """The result lines ("ok", "changed", "skipping", ...) of every task whose name contains `task`."""
    results: list[str] = []
    for block in run.output.split("\nTASK [")[1:]:
        header, _, body = block.partition("\n")
        if task in header:
            results += [line.split(":", 1)[0] for line in body.splitlines()
                        if line.split(":", 1)[0] in ("ok", "changed", "skipping", "fatal", "failed")]
    return results


def run_playbook(playbook: str | Path, *options: str, extra_vars: dict | None = None,
                 extra_inventory: str | Path | None = None, timeout: int = 1200) -> PlaybookRun:
    """Run `playbook` against the scenario's inventory (plus `extra_inventory`), from the repo root."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    argv = ["ansible-playbook", "-i", str(inventory.parent)]
    if extra_inventory:
        argv += ["-i", str(extra_inventory)]
    with tempfile.TemporaryDirectory(prefix="molecule-run-") as tmp:
        failures = Path(tmp) / "failed-tasks.jsonl"
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
                   ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FILTER_PLUGINS=str(ROOT / "filter_plugins"),
                   ANSIBLE_CALLBACK_PLUGINS=str(Path(__file__).parent / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="failed_tasks", CHATFLEET_FAILED_TASKS_FILE=str(failures))
        if extra_vars:
            varfile = Path(tmp) / "vars.json"
            varfile.write_text(json.dumps(extra_vars))
            argv += ["-e", f"@{varfile}"]
        proc = subprocess.run([*argv, str(playbook), *options], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        records = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    return PlaybookRun(proc, records)


def run_role(role: str, *options: str, hosts: str = "all", extra_vars: dict | None = None,
             tasks_from: str | None = None, gather_facts: bool = False,
             extra_inventory: str | Path | None = None, timeout: int = 1200) -> PlaybookRun:
    """Apply one role (or one of its task files) to `hosts` of the scenario with `extra_vars`."""
    step = {"ansible.builtin.include_role": {"name": role}}
    if tasks_from:
        step["ansible.builtin.include_role"]["tasks_from"] = tasks_from
    play = [{"name": f"Apply {role}", "hosts": hosts, "gather_facts": gather_facts,
             "tasks": [{"name": f"Run {role}", **step}]}]
    with tempfile.TemporaryDirectory(prefix="molecule-play-") as tmp:
        playbook = Path(tmp) / "play.yml"
        playbook.write_text(json.dumps(play))  # JSON is YAML
        return run_playbook(playbook, *options, extra_vars=extra_vars, extra_inventory=extra_inventory,
                            timeout=timeout)


def docker_exec(node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command on a node as root (for set-up that testinfra's host fixture does not cover)."""
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=check)


def wait_booted(node: str, timeout: float = 120) -> str:
    """Wait until a node that was (re)started has booted (systemd running or degraded; sshd is up by
    then): in its first moments systemctl fails at once ("Failed to connect to bus") instead of waiting."""
    deadline = time.monotonic() + timeout
    while True:
        state = docker_exec(node, "systemctl", "is-system-running", "--wait", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return state
        assert time.monotonic() < deadline, f"{node} did not boot within {timeout} s: {state!r}"
        time.sleep(1)


MIRROR_ACCESS_LOG = Path(os.environ.get("LAB_MIRROR_ACCESS_LOG", ROOT / ".lab" / "mirror" / "log" / "nginx-access.log"))
_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<bytes>\d+)')


class MirrorRequests:
    """The requests the lab mirror's front door logged from the start of a `with` block to its end."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def __enter__(self) -> "MirrorRequests":
        self._offset = MIRROR_ACCESS_LOG.stat().st_size
        return self

    def __exit__(self, *_exc) -> None:
        with MIRROR_ACCESS_LOG.open("rb") as log:
            log.seek(self._offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
        self.requests = [m.groupdict() for m in map(_REQUEST.search, lines) if m]

    def paths(self, prefix: str = "") -> list[str]:
        """Request paths (query strings dropped) that start with `prefix`."""
        return [r["path"].split("?")[0] for r in self.requests if r["path"].startswith(prefix)]

    def lfs_downloads(self, prefix: str = "") -> list[str]:
        """The Git LFS object ids downloaded through the front door from repositories under `prefix`."""
        return [path.rsplit("/", 1)[-1] for path in self.paths(prefix) if "/info/lfs/objects/storage/" in path]
