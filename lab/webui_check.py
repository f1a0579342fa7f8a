#!/usr/bin/env python3
"""Render a node's real Chatchat WebUI in headless Chromium (Debian's `chromium`), stdlib only.

    python3 lab/webui_check.py --url http://127.0.0.1:8501 --screenshot artifacts/webui-lab-l40-1.png

Starts Chromium with a fresh profile and drives it over the DevTools protocol: opens the page, waits
(up to --timeout seconds of real time: streamlit runs webui.py, which imports the app, on the first
visit) until Chatchat's dialogue page is drawn (the chat input of webui_pages/dialogue) and stays so
for a moment, then reads the sidebar's version caption and any exception box (streamlit draws one for
an exception in the script), and saves a PNG screenshot. Prints one JSON object (dialogue, version,
exceptions, screenshot, seconds, problems); exit status 1 when there is a problem.
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

# As this machine's notes say to run it: no sandbox (root), no GPU, and nothing that reaches out.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,1000", "--remote-debugging-port=0"]
# What the page holds once webui.py has run: the dialogue page's chat input, the sidebar's caption
# "当前版本：<VERSION>", and the exception boxes.
STATE = """JSON.stringify({
  dialogue: !!document.querySelector('textarea[placeholder^="请输入对话内容"]'),
  running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  version: ((document.body ? document.body.innerText : '').match(/当前版本：\\s*(v[0-9.]+)/) || [null, null])[1],
  exceptions: Array.from(document.querySelectorAll('[data-testid="stException"]')).map(e => e.innerText.slice(-600))
})"""


class DevTools:
    """A minimal WebSocket client (RFC 6455: text frames, client-masked) speaking the DevTools protocol."""

    def __init__(self, ws_url):
        url = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {response[:200]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _frame(self):
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        return first & 0x0F, self._read(length)

    def call(self, method, **params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        header = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", len(payload)) if len(payload) < 65536 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", len(payload)))
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        message = b""
        while True:
            opcode, data = self._frame()
            message += data
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x1, 0x0):
                try:
                    answer = json.loads(message)
                except ValueError:
                    continue  # a fragmented message: more frames follow
                message = b""
                if answer.get("id") == self.next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]


def page_state(tools):
    return json.loads(tools.call("Runtime.evaluate", expression=STATE, returnByValue=True)["result"]["value"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--screenshot", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds the page may take to draw")
    args = parser.parse_args(argv)
    problems, state = [], {"dialogue": False, "version": None, "exceptions": []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="webui-check-", ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen([shutil.which("chromium") or "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                    "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            for line in browser.stderr:
                found = re.search(r"DevTools listening on (ws://\S+)", line)
                if found:
                    break
            else:
                raise RuntimeError("chromium did not open its DevTools endpoint")
            endpoint = urllib.parse.urlparse(found.group(1))
            request = urllib.request.Request(f"http://{endpoint.netloc}/json/new?{urllib.parse.quote(args.url, safe='')}",
                                             method="PUT")
            with urllib.request.urlopen(request, timeout=30) as answer:
                tools = DevTools(json.load(answer)["webSocketDebuggerUrl"])
            drawn_since = None
            while time.monotonic() - started < args.timeout:
                state = page_state(tools)
                settled = state["dialogue"] and not state["running"]
                drawn_since = (drawn_since or time.monotonic()) if settled else None
                if state["exceptions"] or (drawn_since and time.monotonic() - drawn_since >= 2):
                    break
                time.sleep(0.5)
            shot = tools.call("Page.captureScreenshot", format="png")
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            args.screenshot.write_bytes(base64.b64decode(shot["data"]))
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            problems.append(f"chromium: {error}")
        finally:
            os.killpg(browser.pid, 9)  # the browser and its helper processes
            browser.wait()
    if not state["dialogue"]:
        problems.append(f"no dialogue page (its chat input) within {args.timeout:g} s")
    if state["exceptions"]:
        problems.append(f"the page shows {len(state['exceptions'])} exception(s): {state['exceptions'][0]}")
    result = {"dialogue": state["dialogue"], "version": state["version"], "exceptions": state["exceptions"],
              "screenshot": str(args.screenshot), "seconds": round(time.monotonic() - started, 1), "problems": problems}
    json.dump(result, sys.stdout, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
