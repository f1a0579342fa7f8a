"""The knowledge-base round trip of the site's GPU nodes (lab/chatchat_e2e.py through each node's real
API server; the nodes share the host's network). test_site.py uploads the lab's document into each
node's KB; the fleet operations ask the same KB again after a release change and a rollback."""
from __future__ import annotations

import json
import subprocess
import sys

from testlib import ROOT

API_PORT = {"site-l40-1": 7861, "site-a100-1": 8861}


def kb_name(node: str) -> str:
    return f"{node.replace('-', '_')}_e2e"


def ask_kb(node: str, *options: str) -> dict:
    """chatchat_e2e.py's result for the node's KB; fails the test on any problem it reports."""
    e2e = subprocess.run([sys.executable, str(ROOT / "lab" / "chatchat_e2e.py"), "--api",
                          f"http://127.0.0.1:{API_PORT[node]}", "--kb", kb_name(node), "--model", "tiny-gpt2", *options],
                         capture_output=True, text=True, timeout=600)
    result = json.loads(e2e.stdout or "{}")
    assert e2e.returncode == 0 and result["problems"] == [], e2e.stdout + e2e.stderr
    return result
