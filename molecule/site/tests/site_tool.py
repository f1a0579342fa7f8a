"""The chatfleet tool as the site's tests run it (the venv's installed `chatfleet` command, through
ansible-runner, against the scenario's inventory), with its exit code, output and report.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testlib import ROOT


class ToolRun:
    def __init__(self, rc: int, output: str, artifacts: Path):
        self.rc, self.output = rc, output
        runs = sorted(p for p in artifacts.iterdir() if (p / "report.json").exists()) if artifacts.exists() else []
        self.report = json.loads((runs[-1] / "report.json").read_text()) if runs else None

    def __repr__(self) -> str:
        return f"ToolRun(rc={self.rc})\n{self.output[-6000:]}"


def tool_argv(tmp_path: Path, command: str, *argv: str) -> list[str]:
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return [str(Path(sys.executable).parent / "chatfleet"), command, "-i", str(inventory),
            "--artifacts", str(tmp_path / "artifacts"), *argv]


def chatfleet(tmp_path: Path, command: str, *argv: str) -> ToolRun:
    proc = subprocess.run(tool_argv(tmp_path, command, *argv), cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)
    return ToolRun(proc.returncode, proc.stdout + proc.stderr, tmp_path / "artifacts")
