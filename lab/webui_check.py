#!/usr/bin/env python3
"""Render a node's real Chatchat WebUI in headless Chromium (Debian's `chromium`), stdlib only.

    python3 lab/webui_check.py --url http://127.0.0.1:8501 --screenshot artifacts/webui-lab-l40-1.png

Loads the page twice with a fresh profile (once for the rendered DOM, once for a PNG screenshot),
each given --budget seconds of page time for streamlit to run webui.py and draw it, then checks the
DOM: Chatchat's dialogue page (the chat input of webui_pages/dialogue and the sidebar's version
caption) is there, and no exception box (streamlit draws one for an exception in the script).
Prints one JSON object (dialogue, version, exceptions, screenshot, problems); exit status 1 when
there is a problem.
"""
import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# As this machine's notes say to run it: no sandbox (root), no GPU, and nothing that reaches out.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,1000"]
DIALOGUE_MARKER = "请输入对话内容"  # the dialogue page's chat input placeholder
VERSION_MARKER = "当前版本："  # the sidebar's version caption


def chromium(url, budget, *mode):
    with tempfile.TemporaryDirectory(prefix="webui-check-") as profile:
        return subprocess.run([shutil.which("chromium") or "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               f"--virtual-time-budget={int(budget * 1000)}", *mode, url],
                              capture_output=True, text=True, timeout=budget + 120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--screenshot", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of page time before the capture")
    args = parser.parse_args(argv)
    problems = []
    dom = chromium(args.url, args.budget, "--dump-dom")
    if dom.returncode != 0 or not dom.stdout:
        problems.append(f"chromium --dump-dom failed ({dom.returncode}): {dom.stderr[-300:]}")
    text = html.unescape(dom.stdout)
    exceptions = [re.sub(r"<[^>]+>", " ", block)[:300] for block in
                  re.findall(r'data-testid="stException".*?</div>\s*</div>', text, re.S)]
    version = re.search(VERSION_MARKER + r"\s*(v[0-9.]+)", re.sub(r"<[^>]+>", "", text))
    result = {"dialogue": DIALOGUE_MARKER in text, "version": version.group(1) if version else None,
              "exceptions": exceptions, "screenshot": str(args.screenshot)}
    if not result["dialogue"]:
        problems.append(f"the page has no dialogue chat input ({DIALOGUE_MARKER!r})")
    if exceptions:
        problems.append(f"the page shows {len(exceptions)} exception(s): {exceptions[0]}")
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = chromium(args.url, args.budget, f"--screenshot={args.screenshot.resolve()}")
    if shot.returncode != 0 or not args.screenshot.is_file():
        problems.append(f"chromium --screenshot failed ({shot.returncode}): {shot.stderr[-300:]}")
    result["problems"] = problems
    json.dump(result, sys.stdout, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
