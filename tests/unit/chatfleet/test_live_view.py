"""The live view on a real terminal: the tool runs in tmux (its own server), a real ansible-runner run of
fixtures/batches.yml over three local hosts in two serial batches, each host held at a task until the
test lets it go; capture-pane shows, at each step, the batches with their hosts done, running and
failed, and each running host's task; then the failure above the view and the report under it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[3]
DRIVER = """
import sys
from chatfleet import cli, project
args = cli.parser().parse_args(sys.argv[2:])
project.use(project.find(None))
decided = cli.plan(args)
decided["playbook"] = sys.argv[1]
sys.exit(cli.run(args, decided))
"""


def test_the_live_view_shows_each_batch_its_running_hosts_and_their_tasks(tmp_path):
    assert shutil.which("tmux"), "tmux is a host package of the project (lab/labctl.py HOST_PACKAGES)"
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
        "  children:\n    gpu_nodes:\n      hosts:\n        node-a:\n        node-b:\n        node-c:\n")
    (tmp_path / "drive.py").write_text(DRIVER)
    command = (f"{sys.executable} {tmp_path / 'drive.py'} {FIXTURES / 'batches.yml'} status -i {tmp_path / 'hosts.yml'} "
               f"--artifacts {tmp_path / 'art'} -e scratch={tmp_path}; echo EXIT=$?; sleep 120")
    tmux = ["tmux", "-L", f"chatfleet-test-{os.getpid()}"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "live", "-x", "150", "-y", "50", command], cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)

    def screen_when(what: str, pattern: str) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "live"], capture_output=True, text=True).stdout
            if re.search(pattern, screen, re.S):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"the terminal never showed {what}:\n{screen}")

    try:
        first = screen_when("batch 1 with node-a on its task", r"node-a\s+Wait for the go signal")
        assert re.search(r"chatfleet status: \d+:\d\d elapsed, 1 host\(s\) seen, 0 failed", first), first
        assert re.search(r"^\s*1\s+Batches\s+0\s+1\s+0\s+\d+:\d\d", first, re.M), first
        (tmp_path / "go-node-a").touch()
        second = screen_when("batch 2 with node-b and node-c on their task",
                             r"node-b\s+Wait for the go signal.*node-c\s+Wait for the go signal")
        assert re.search(r"^\s*1\s+Batches\s+1\s+0\s+0\s+\d+:\d\d", second, re.M), second
        assert re.search(r"^\s*2\s+Batches\s+0\s+2\s+0\s+\d+:\d\d", second, re.M), second
        assert "node-a  " not in second.split("2  Batches")[-1], second  # done hosts leave the running list
        if os.environ.get("CHATFLEET_LIVE_CAPTURE"):  # docs/chatfleet-live.md's capture
            Path(os.environ["CHATFLEET_LIVE_CAPTURE"]).write_text(second)
        (tmp_path / "go-node-b").touch()
        (tmp_path / "go-node-c").touch()
        final = screen_when("the run's end", r"EXIT=\d")
        assert "node-c failed: Fail on node-c: node-c is broken on purpose" in final, final
        assert re.search(r"^\s*2\s+Batches\s+1\s+0\s+1\s+\d+:\d\d", final, re.M), final
        assert "# chatfleet status: failed" in final and "EXIT=1" in final, final
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
