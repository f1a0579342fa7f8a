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
    `ranges` is off; records each request's Range header."""

    def __init__(self, served: bytes = CONTENT, ranges: bool = True):
        self.served, self.ranges, self.asked = served, ranges, []

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
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.href = f"http://127.0.0.1:{self.httpd.server_address[1]}/{OID}"
        return self

    def __exit__(self, *exc):
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


def test_a_server_that_ignores_the_range_sends_it_all_again(repo):
    (repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX / OID).write_bytes(CONTENT[:5])
    puller = model_pull.ModelPull(Module())
    with ObjectServer(ranges=False) as server:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert server.asked == ["bytes=5-"]
    assert stored(puller, repo).read_bytes() == CONTENT


@pytest.mark.parametrize("served", [CONTENT[:-1], CONTENT[:-1] + b"\x00", CONTENT + b"x"],
                         ids=["short", "a flipped byte", "too long"])
def test_bytes_that_are_not_the_pointers_are_refused_and_not_kept(repo, served):
    puller = model_pull.ModelPull(Module())
    with ObjectServer(served=served) as server, pytest.raises(model_pull.PullError) as error:
        puller.download(str(repo), OID, len(CONTENT), server.href, {})
    assert f"expected {len(CONTENT)} bytes with {OID}" in str(error.value)
    assert not stored(puller, repo).exists()
    assert not any((repo / ".git" / "lfs" / model_pull.DOWNLOAD_INBOX).iterdir())
