"""roles/chatchat_services/files/chatchat-wait.py, the units' health gate, against real HTTP servers on
127.0.0.1: one call waits for every UNIT URL METHOD TIMEOUT group, gives up on a unit that systemd
reports failed without waiting out its timeout, and names each unit that did not answer.

systemctl and journalctl are stand-ins on PATH (the build machine's systemd is not PID 1): they
answer the unit's state and log lines as a node's would."""
from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

WAIT = Path(__file__).resolve().parents[2] / "roles" / "chatchat_services" / "files" / "chatchat-wait.py"


class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture()
def closed_url():
    """A URL where nothing listens: a port that was free a moment ago."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/"


def systemd_stand_ins(bin_dir: Path, failed_unit: str) -> dict[str, str]:
    """systemctl reports `failed_unit` failed and every other unit activating; journalctl prints a
    log line naming the unit."""
    bin_dir.mkdir()
    scripts = {
        "systemctl": f'case " $* " in *" {failed_unit} "*) echo ActiveState=failed; echo SubState=failed; '
                     'echo NRestarts=5;; *) echo ActiveState=activating;; esac',
        "journalctl": 'echo "log line of $2"',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def wait(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WAIT), *argv], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def test_one_call_waits_for_every_unit(url):
    done = wait("a.service", url, "post", "10", "b.service", url + "health", "GET", "10")
    assert done.returncode == 0, done.stderr
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [["a.service", "answered"],
                                                                      ["b.service", "answered"]]


def test_a_failed_unit_is_named_at_once_and_the_others_are_still_waited_for(url, closed_url, tmp_path):
    env = systemd_stand_ins(tmp_path / "bin", "dead.service")
    started = time.monotonic()
    done = wait("dead.service", closed_url, "POST", "30", "alive.service", url, "GET", "30", env=env)
    assert time.monotonic() - started < 15  # not the dead unit's 30 s timeout
    assert done.returncode == 1
    assert "dead.service is failed (failed, 5 restarts)" in done.stderr and "log line of dead.service" in done.stderr
    assert done.stdout.split()[:2] == ["alive.service", "answered"]


def test_a_unit_that_never_answers_is_named_with_its_timeout(closed_url, tmp_path):
    env = systemd_stand_ins(tmp_path / "bin", "none.service")
    done = wait("slow.service", closed_url, "GET", "2", env=env)
    assert done.returncode == 1
    assert "slow.service did not answer GET" in done.stderr and "within 2 s (chatchat_services_health_timeout)" in done.stderr


@pytest.mark.parametrize("argv", [[], ["a.service", "http://127.0.0.1:1/", "GET"]])
def test_groups_of_four_arguments_or_usage(argv):
    done = wait(*argv)
    assert done.returncode == 2 and "UNIT URL METHOD TIMEOUT" in done.stderr
