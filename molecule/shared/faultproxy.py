"""Test helper (fault injection, never installed by a role): an HTTP proxy in front of the lab
mirror that drops the connection half-way through the files it is told to break, as a mirror that
goes down in the middle of a run does. Everything else it passes through unchanged.

    with FaultProxy(MIRROR_URL, break_files=".whl", keep_bytes=1 << 20) as proxy:
        run_role(..., extra_vars={"python_env_index_url": proxy.url + "/repository/pypi-proxy/simple/"})
    assert proxy.broken  # the paths whose transfer was cut

It listens on 127.0.0.1 (the scenario's nodes share the host's network) on a free port.
"""
from __future__ import annotations

import http.server
import shutil
import threading
import urllib.error
import urllib.request


class FaultProxy:
    def __init__(self, upstream: str, break_files: str, keep_bytes: int = 1 << 20):
        self.upstream = upstream.rstrip("/")
        self.break_files = break_files
        self.keep_bytes = keep_bytes
        self.broken: list[str] = []
        self.passed: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use FaultProxy as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                try:
                    upstream = urllib.request.urlopen(proxy.upstream + self.path, timeout=30)  # noqa: S310
                except urllib.error.HTTPError as error:
                    upstream = error
                with upstream:
                    self.send_response(upstream.status)
                    for name, value in upstream.headers.items():
                        if name.lower() not in ("connection", "transfer-encoding"):
                            self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if proxy.break_files in self.path.split("#")[0] and upstream.status == 200:
                        self.wfile.write(upstream.read(proxy.keep_bytes))
                        self.wfile.flush()
                        proxy.broken.append(self.path)
                    else:
                        shutil.copyfileobj(upstream, self.wfile)
                        proxy.passed.append(self.path)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
