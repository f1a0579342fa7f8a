"""Tests of the lab mirror (lab/mirror.py) against a running instance.

The session fixture runs `lab/mirror.py up` (cached: about a second when the mirror is already
built and running). Run with `.venv/bin/pytest -q tests/lab`.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIRROR = ROOT / "lab" / "mirror.py"
BASE = f"http://127.0.0.1:{os.environ.get('LAB_MIRROR_PORT', '18080')}"
PYPI_INDEX = f"{BASE}/repository/pypi-proxy/simple/"
RAW = f"{BASE}/repository/raw-hosted/"
APT = f"{BASE}/repository/apt-debian/"
MODEL_REPO = f"{BASE}/repository/models/lab/tiny-gpt2.git"
BASE_IMAGE = os.environ.get("LAB_BASE_IMAGE", "chatfleet/debian-systemd:bookworm")


def read_list(name: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "lab" / "mirror" / name).read_text().splitlines())
    return [line for line in lines if line]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def status_of(url: str, method: str = "GET", data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, data=data), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="session", autouse=True)
def mirror_up() -> None:
    subprocess.run([sys.executable, str(MIRROR), "up"], check=True)


@pytest.fixture()
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no pip configuration and an empty HOME (no git/git-lfs config)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    return env


def test_status_reports_every_endpoint_up() -> None:
    out = subprocess.run([sys.executable, str(MIRROR), "status"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    for endpoint in ("pypi-proxy", "raw-hosted", "apt-debian", "models (git)", "models (lfs)"):
        assert any(line.startswith(endpoint) and line.endswith(" up") for line in out.stdout.splitlines())


def test_pypi_index_lists_every_requirement() -> None:
    index = fetch(PYPI_INDEX).decode().lower()
    for req in read_list("pypi-packages.txt"):
        name = req.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        assert f">{name.lower().replace('_', '-')}<" in index.replace("_", "-")


def test_pip_installs_from_the_pypi_endpoint_only(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "--index-url", PYPI_INDEX, "requests"],
                         env=isolated_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # Every file came through the front door, from the pypi-proxy prefix.
    downloads = [line for line in out.stdout.splitlines() if "Downloading" in line]
    assert downloads
    assert all(f"{BASE}/repository/pypi-proxy/packages/" in line for line in downloads)
    subprocess.run([str(venv / "bin" / "python"), "-c", "import requests"], check=True)


def test_raw_files_match_sha256sums() -> None:
    sums = fetch(RAW + "SHA256SUMS").decode().splitlines()
    names = [line.split(None, 1)[1] for line in sums]
    assert "lab/hello-1.0.0.tar.gz" in names
    for line in sums:
        digest, name = line.split(None, 1)
        assert hashlib.sha256(fetch(RAW + name)).hexdigest() == digest, name
        # The per-file checksum (what ansible.builtin.get_url's checksum: can point at).
        assert fetch(RAW + name + ".sha256").decode().split()[0] == digest, name
    with tarfile.open(fileobj=io.BytesIO(fetch(RAW + "lab/hello-1.0.0.tar.gz"))) as tar:
        assert "hello-1.0.0/bin/hello" in tar.getnames()


def test_apt_repository_lists_the_packages_with_their_files() -> None:
    release = fetch(APT + "dists/bookworm/Release").decode()
    assert "Suite: bookworm" in release and "Components: main" in release
    packages_gz = fetch(APT + "dists/bookworm/main/binary-amd64/Packages.gz")
    assert hashlib.sha256(packages_gz).hexdigest() in release
    stanzas = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(" "))
               for block in gzip.decompress(packages_gz).decode().split("\n\n") if block.strip()]
    names = {s["Package"] for s in stanzas}
    assert {"git", "git-lfs"} <= names
    assert set(read_list("apt-packages.txt")) <= names
    git_lfs = next(s for s in stanzas if s["Package"] == "git-lfs")
    deb = fetch(APT + git_lfs["Filename"])
    assert len(deb) == int(git_lfs["Size"])
    assert hashlib.sha256(deb).hexdigest() == git_lfs["SHA256"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs docker and the lab base image")
def test_apt_installs_git_lfs_with_only_the_mirror_as_source() -> None:
    script = (
        "set -e; rm -f /etc/apt/sources.list; rm -rf /etc/apt/sources.list.d/* /var/lib/apt/lists/*;"
        f" echo 'deb [trusted=yes] {APT} bookworm main' > /etc/apt/sources.list.d/lab.list;"
        " apt-get -q update >/dev/null;"
        " DEBIAN_FRONTEND=noninteractive apt-get install -y -q git git-lfs >/dev/null;"
        " git lfs version"
    )
    out = subprocess.run(["docker", "run", "--rm", "--network", "host", "--label", "chatfleet.lab=mirror-test",
                          "--entrypoint", "/bin/sh", BASE_IMAGE, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("git-lfs/")


def test_model_clone_fetches_real_lfs_content(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    def git(*args: str, cwd: Path = tmp_path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env=isolated_env, check=True,
                              capture_output=True, text=True).stdout

    git("lfs", "install")
    git("clone", "-q", MODEL_REPO, "tiny-gpt2")
    clone = tmp_path / "tiny-gpt2"
    for name in ("config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "model.safetensors"):
        assert (clone / name).is_file(), name
    weights = (clone / "model.safetensors").read_bytes()
    assert not weights.startswith(b"version https://git-lfs"), "got an LFS pointer, not the object"
    oid = git("lfs", "ls-files", "--long", cwd=clone).split()[0]
    assert hashlib.sha256(weights).hexdigest() == oid
    assert "Git LFS fsck OK" in git("lfs", "fsck", cwd=clone)


def test_lfs_uploads_are_refused_through_the_front_door() -> None:
    oid = "0" * 64
    url = f"{MODEL_REPO}/info/lfs/objects/storage/{oid}"
    assert status_of(url, method="PUT", data=b"x") == 403


def test_conda_proxy_is_documented_as_absent() -> None:
    assert status_of(f"{BASE}/repository/conda-proxy/") == 404


# The test doubles published from molecule/fixtures/ and the SHA-256 pins that point at them:
# a fixture edited without updating its pin fails here, before any molecule run.
def _pinned(path: str, key: str) -> str:
    for line in (ROOT / path).read_text().splitlines():
        if line.strip().startswith(f"{key}:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError(f"{key} not found in {path}")


@pytest.mark.parametrize(("served", "pin_file", "pin_key"), [
    ("fixtures/chatchat/Langchain-Chatchat-0.2.8.tar.gz",
     "inventories/lab/group_vars/gpu_nodes/chatchat.yml", "chatchat_source_sha256"),
    ("fixtures/conda/Miniconda3-double-23.11.0-Linux-x86_64.sh",
     "roles/conda/molecule/default/molecule.yml", "conda_installer_sha256"),
])
def test_published_fixture_matches_its_pin(served, pin_file, pin_key):
    data = fetch(RAW + served)
    assert hashlib.sha256(data).hexdigest() == _pinned(pin_file, pin_key)
    assert fetch(RAW + served + ".sha256").decode().split()[0] == hashlib.sha256(data).hexdigest()


def test_chatchat_fixture_has_the_release_layout():
    with tarfile.open(fileobj=io.BytesIO(fetch(RAW + "fixtures/chatchat/Langchain-Chatchat-0.2.8.tar.gz"))) as tar:
        names = set(tar.getnames())
    top = "Langchain-Chatchat-0.2.8/"
    for member in ("startup.py", "init_database.py", "webui.py", "requirements.txt", "configs/__init__.py",
                   *(f"configs/{c}_config.py.example" for c in ("basic", "kb", "model", "prompt", "server"))):
        assert top + member in names, member
    assert any(n.startswith(top + "nltk_data/") for n in names)
    assert any(n.startswith(top + "server/") for n in names)
    assert all(n.startswith(top) for n in names)
