"""The chatfleet.chatchat collection on a controller without the checkout's roles and plugins: the
tarball built by tools/build_collection.py, installed with --offline into a collections path of its
own, runs the site's preflight on the scenario's three nodes with an ansible.cfg that names nothing of
the checkout (no roles path, no filter, action or module path)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testlib import ROOT

BIN = Path(sys.executable).parent


def test_the_installed_collection_runs_the_preflight_on_the_site(tmp_path):
    built = subprocess.run([sys.executable, str(ROOT / "tools" / "build_collection.py"), "--out", str(tmp_path / "dist")],
                           capture_output=True, text=True, check=True)
    collections = tmp_path / "collections"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections),
                    built.stdout.split()[-1]], capture_output=True, text=True, check=True)
    (tmp_path / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {collections}\ninject_facts_as_vars = false\ninterpreter_python = auto_silent\n"
        "[ssh_connection]\npipelining = true\nssh_args = -o ControlMaster=auto -o ControlPersist=60s\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_EPHEMERAL"))}
    env["ANSIBLE_CONFIG"] = str(tmp_path / "ansible.cfg")
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "chatfleet.chatchat.preflight"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    recap = [line for line in run.stdout.splitlines() if " : ok=" in line]
    assert len(recap) == 3 and all("failed=0" in line and "unreachable=0" in line for line in recap), recap
    assert "chatfleet.chatchat.gpu_preflight : " in run.stdout
