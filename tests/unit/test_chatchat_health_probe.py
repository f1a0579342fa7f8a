"""roles/chatchat_health/files/chatchat-health.py against a real HTTP server on 127.0.0.1 that stands
in for a node's openai_api and API servers: a gate probes again until the node is healthy or its
retries run out, and prints the last probe; the API's /chat/chat is asked with a conversation_id and
an empty answer is a problem."""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "roles" / "chatchat_health" / "files" / "chatchat-health.py"


class OpenAIServer(http.server.ThreadingHTTPServer):
    """Lists no model for its first `unready_listings` /v1/models requests, then lists `tiny`."""

    def __init__(self, unready_listings: int, chat_body: str = '{"text": "hi", "message_id": "m1"}'):
        super().__init__(("127.0.0.1", 0), Handler)
        self.unready_listings = unready_listings
        self.listings = 0
        self.chat_body = chat_body
        self.chat_requests: list[dict] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: OpenAIServer

    def _answer(self, body: dict | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.listings += 1
        ready = self.server.listings > self.server.unready_listings
        self._answer({"data": [{"id": "tiny"}] if ready else []})

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/chat/chat":
            self.server.chat_requests.append(json.loads(body))
            self._answer(self.server.chat_body)
        else:
            self._answer({"usage": {"completion_tokens": 3}})

    def log_message(self, *args):
        pass


@pytest.fixture
def node(tmp_path, request):
    server = OpenAIServer(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    manifest = tmp_path / "chatchat-services.json"
    manifest.write_text(json.dumps({"units": [], "models": ["tiny"],
                                    "openai_api": f"http://127.0.0.1:{server.server_address[1]}/v1"}))
    yield manifest
    server.shutdown()


def probe(manifest: Path, *argv: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, str(PROBE), str(manifest), *argv], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(proc.stdout), proc.stderr


@pytest.mark.parametrize("node", [2], indirect=True)
def test_a_gate_probes_again_until_the_node_is_healthy(node):
    result, told = probe(node, "--retries", "3", "--retry-delay", "0.1")
    assert result["healthy"] and result["probes"] == 3 and result["models_listed"] == ["tiny"], result
    assert told.count("not healthy (the openai_api server does not list tiny); probing again in 0.1 s") == 2, told


@pytest.mark.parametrize("node", [5], indirect=True)
def test_a_gate_whose_retries_run_out_prints_the_last_unhealthy_probe(node):
    result, _ = probe(node, "--retries", "1", "--retry-delay", "0.1")
    assert not result["healthy"] and result["probes"] == 2, result
    assert result["problems"] == ["the openai_api server does not list tiny"]


@pytest.mark.parametrize("node", [1], indirect=True)
def test_a_report_only_probe_runs_once(node):
    result, told = probe(node)
    assert not result["healthy"] and result["probes"] == 1 and told == "", result


def test_a_node_without_services_is_reported_without_probing(tmp_path):
    result, _ = probe(tmp_path / "missing.json", "--retries", "3")
    assert result["installed"] is False and result["probes"] == 0 and not result["healthy"]


@pytest.fixture
def api_node(tmp_path, request):
    """A node whose record names its API server; request.param is what /chat/chat answers."""
    server = OpenAIServer(0, request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    manifest = tmp_path / "chatchat-services.json"
    manifest.write_text(json.dumps({"units": [], "models": ["tiny"], "openai_api": f"{base}/v1", "api": base}))
    yield manifest, server
    server.shutdown()


@pytest.mark.parametrize("api_node", ['{"text": "hi", "message_id": "m1"}'], indirect=True)
def test_the_api_chat_is_asked_with_a_conversation_id(api_node):
    manifest, server = api_node
    result, _ = probe(manifest)
    assert result["healthy"] and result["api_chat"]["status"] == 200 and result["api_chat"]["chars"] == 2, result
    (asked,) = server.chat_requests
    assert len(asked["conversation_id"]) == 32 and asked["model_name"] == "tiny" and asked["stream"] is False


# Chatchat v0.2.8 answers /chat/chat without a conversation_id with HTTP 200 and an empty body.
@pytest.mark.parametrize("api_node", [""], indirect=True)
def test_an_api_chat_that_answers_an_empty_body_is_a_problem(api_node):
    manifest, _ = api_node
    result, _ = probe(manifest)
    assert not result["healthy"]
    assert result["problems"] == ["the API server's /chat/chat answered no text (200 in "
                                  f"{result['api_chat']['seconds']:.1f} s: )"]
