"""`pip install .` gives a working `chatfleet` command: built from pyproject.toml into a directory of its
own (no index: the build needs only the venv's setuptools), it reports the package's version, says
where to point it outside a project, and plans a run against this checkout with --project-dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_pip_install_gives_a_chatfleet_command_that_runs_this_project(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(ROOT)], check=True, capture_output=True, text=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("CHATFLEET_ROOT", None)

    def chatfleet(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(site / "bin" / "chatfleet"), *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, check=False)

    imported = subprocess.run([sys.executable, "-c", "import chatfleet; print(chatfleet.__file__, chatfleet.__version__)"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert imported[0] == str(site / "chatfleet" / "__init__.py")
    version = chatfleet("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"chatfleet {imported[1]}", version
    outside = chatfleet("status", "-i", str(ROOT / "inventories" / "lab"))
    assert outside.returncode == 2 and f"no chatfleet project in {tmp_path} or above it" in outside.stderr, outside
    planned = chatfleet("rollout", "-i", str(ROOT / "inventories" / "lab"), "--limit", "h100", "--project-dir", str(ROOT))
    assert planned.returncode == 2 and "'h100' is no group or host" in planned.stderr, planned
