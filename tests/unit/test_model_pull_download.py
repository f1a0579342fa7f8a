"""Unit tests for model_pull's direct download (roles/models/library/model_pull.py): an LFS object
fetched over HTTP from a local server, hashed while written, resumed with a range, refused when its
bytes are not the pointer's. The module is loaded with its module_utils import pointed at the role's
model_store.py, as Ansible ships it."""
from __future__ import annotations

import hashlib
import http.server
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


model_store = _load("ansible.module_utils.model_store", ROOT / "roles/models/module_utils/model_store.py")
model_pull = _load("chatfleet_model_pull", ROOT / "roles/models/library/model_pull.py")

CONTENT = bytes(range(256)) * 40000  # 10 MB: several chunks
OID = hashlib.sha256(CONTENT).hexdigest()


class ObjectServer:
    """Serves CONTENT at /<oid> (or `served` in its place), honouring `Range: bytes=N-` unless
    `ranges` is off, and holding the connection open after `cut_after` bytes of a whole object (a
    transfer that hangs); records each request's Range header."""

    def __init__(self, served: bytes = CONTENT, ranges: bool = True, cut_after: int | None = None):
        self.served, self.ranges, self.cut_after, self.asked = served, ranges, cut_after, []
        self.release = threading.Event()

    def __enter__(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                asked = self.headers.get("Range")
                server.asked.append(asked)
                body, status = server.served, 200
                if asked and server.ranges:
                    body, status = body[int(asked.split("=")[1].rstrip("-")):], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None and status == 200:  # the transfer hangs mid-object
                    self.wfile.write(body[:server.cut_after])
                    self.wfile.flush()
                    server.release.wait(10)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.href = f"http://127.0.0.1:{self.httpd.server_address[1]}/{OID}"
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Module:
    params = {"name": "tiny", "revision": "0" * 40, "store": "/nonexistent", "url": "http://127.0.0.1/m.git",
              "timeout": 10}


@pytest.fixture
def repo(tmp_path):
    (tmp_path / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX).mkdir(parents=True)
    return tmp_path


def stored(puller, repo) -> Path:
    return Path(puller.object_path(str(repo), OID))


def test_an_object_is_hashed_while_written_and_not_hashed_again(repo):
    puller = model_pull.ModelPull(Module())
    with ObjectServer() as server:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert stored(puller, repo).read_bytes() == CONTENT
    assert server.asked == [None]
    # The verification after the pull reads this map instead of hashing the file a second time.
    assert puller.hashed == {model_store.inode_key(str(stored(puller, repo))): OID}
    assert not any((repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX).iterdir())


def test_an_interrupted_object_resumes_where_it_stopped(repo):
    (repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX / OID).write_bytes(CONTENT[:3_000_001])
    puller = model_pull.ModelPull(Module())
    with ObjectServer() as server:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert server.asked == ["bytes=3000001-"]
    assert stored(puller, repo).read_bytes() == CONTENT


def test_what_arrived_before_a_transfer_hung_is_kept_and_resumed(repo):
    """The first try times out (1 s) on a transfer that stopped after 1 000 000 bytes, less than one
    read's CHUNK: what arrived is on disk all the same, and the next try asks for the rest."""
    module = Module()
    module.params = dict(Module.params, timeout=1)
    puller = model_pull.ModelPull(module)
    with ObjectServer(cut_after=1_000_000) as server, pytest.raises(OSError):
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    partial = repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX / OID
    assert partial.stat().st_size == 1_000_000
    with ObjectServer() as server:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert server.asked == ["bytes=1000000-"]
    assert stored(puller, repo).read_bytes() == CONTENT


def test_a_server_that_ignores_the_range_sends_it_all_again(repo):
    (repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX / OID).write_bytes(CONTENT[:5])
    puller = model_pull.ModelPull(Module())
    with ObjectServer(ranges=False) as server:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert server.asked == ["bytes=5-"]
    assert stored(puller, repo).read_bytes() == CONTENT


@pytest.mark.parametrize("served", [CONTENT[:-1] + b"\x00", CONTENT + b"x"], ids=["a flipped byte", "too long"])
def test_bytes_that_are_not_the_pointers_are_refused_and_not_kept(repo, served):
    puller = model_pull.ModelPull(Module())
    with ObjectServer(served=served) as server, pytest.raises(model_pull.PullError) as error:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert f"expected {len(CONTENT)} bytes with {OID}" in str(error.value)
    assert not stored(puller, repo).exists()
    assert not any((repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX).iterdir())


def test_a_short_object_is_not_stored_and_the_next_try_asks_for_the_rest(repo):
    puller = model_pull.ModelPull(Module())
    with ObjectServer(served=CONTENT[:-1]) as server, pytest.raises(model_pull.PullError, match="of 10240000 bytes arrived"):
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert not stored(puller, repo).exists()
    with ObjectServer() as server:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert server.asked == [f"bytes={len(CONTENT) - 1}-"]
    assert stored(puller, repo).read_bytes() == CONTENT
