"""Fixtures shared by the unit tests: the real fschat wheels, downloaded once and pinned by hash.

The wheels are never copied into the repository: `pip download --require-hashes` fetches each
wheel that fixtures/fschat-wheels.txt pins (one run per version: pip's resolver refuses two
versions of one package in one run) into a cache outside the clone,
${XDG_CACHE_HOME:-~/.cache}/chatfleet/fschat-wheels; later sessions use the cache without asking
the index again once every pinned wheel is there with its hash.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

FSCHAT_WHEELS = Path(__file__).resolve().parent / "fixtures" / "fschat-wheels.txt"
_PIN = re.compile(r"^fschat==(?P<version>\S+)\s+--hash=sha256:(?P<sha256>[0-9a-f]{64})\s*$")


def fschat_pins() -> dict[str, str]:
    """Version -> sha256 of each wheel that fixtures/fschat-wheels.txt pins."""
    pins = {}
    for line in FSCHAT_WHEELS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = _PIN.match(line)
            assert match, f"{FSCHAT_WHEELS}: not 'fschat==VERSION --hash=sha256:HEX': {line!r}"
            pins[match["version"]] = match["sha256"]
    return pins


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatfleet" / "fschat-wheels"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def fschat_wheels() -> dict[str, Path]:
    """Version -> path of the real fschat wheel (0.2.28 ... 0.2.36), each checked against its pin."""
    pins = fschat_pins()
    cache = _cache_dir()
    wheels = {version: cache / f"fschat-{version}-py3-none-any.whl" for version in pins}
    missing = [version for version, path in wheels.items() if not (path.is_file() and _sha256(path) == pins[version])]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
    for version in missing:
        wheels[version].unlink(missing_ok=True)  # a damaged copy: pip would take it for downloaded
        # One pip run per version: pip's resolver refuses two versions of one package in one run.
        with tempfile.TemporaryDirectory(prefix="fschat-pin-") as tmp:
            requirement = Path(tmp) / "requirement.txt"
            requirement.write_text(f"fschat=={version} --hash=sha256:{pins[version]}\n")
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
                 "--disable-pip-version-check", "-q", "-r", str(requirement), "-d", str(cache)],
                capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail(f"pip download of fschat=={version} (pinned in {FSCHAT_WHEELS}) into {cache} failed "
                        f"(rc {proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}", pytrace=False)
    for version, path in wheels.items():
        assert path.is_file(), f"pip download left no {path.name} in {cache}"
        assert _sha256(path) == pins[version], f"{path} does not match its pin in {FSCHAT_WHEELS}"
    return wheels


@pytest.fixture(scope="session")
def fschat_vllm_worker(fschat_wheels: dict[str, Path]) -> dict[str, str]:
    """Version -> the text of fastchat/serve/vllm_worker.py in that real wheel."""
    texts = {}
    for version, wheel in fschat_wheels.items():
        with zipfile.ZipFile(wheel) as archive:
            texts[version] = archive.read("fastchat/serve/vllm_worker.py").decode("utf-8")
    return texts
