"""Helpers for the whole-site scenario: run site.yml against the scenario's nodes."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("CHATFLEET_ROOT", Path(__file__).resolve().parents[3]))
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
                   re.MULTILINE)


class SiteRun:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap = {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
                      for m in RECAP.finditer(self.output)}

    def changed(self) -> int:
        return sum(r["changed"] for r in self.recap.values())


@pytest.fixture(scope="session")
def run_site():
    """Run site.yml with the molecule inventory plus extra -i sources and -e vars."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false")

    def _run(*args: str, extra_inventory: str | None = None, playbook: str = "site.yml") -> SiteRun:
        inventories = ["-i", str(Path(inventory).parent)]
        if extra_inventory:
            inventories += ["-i", extra_inventory]
        proc = subprocess.run(["ansible-playbook", *inventories, str(ROOT / playbook), *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        return SiteRun(proc)

    return _run


def docker_exec(node: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=True)
