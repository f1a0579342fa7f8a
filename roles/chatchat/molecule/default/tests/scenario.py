"""Paths and facts of the chatchat scenario, read from the repository and the lab mirror."""
from __future__ import annotations

import io
import tarfile
import urllib.request

import yaml
from testlib import RAW_URL, ROOT

ENV = "/opt/chatchat/envs/0.2.8"
PYTHON = f"{ENV}/bin/python"
CHATCHAT_ROOT = "/opt/chatchat"
CURRENT = f"{CHATCHAT_ROOT}/current"
DATA = "/var/lib/chatchat"
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "gpu_nodes" / "chatchat.yml"
TARBALL = "chatchat/Langchain-Chatchat-0.2.8.tar.gz"
L40 = "chatchat-l40"
A100 = "chatchat-a100"
NODES = (L40, A100)


def lab_vars() -> dict:
    return yaml.safe_load(LAB_VARS.read_text())


def mirror_sha256() -> str:
    with urllib.request.urlopen(f"{RAW_URL}{TARBALL}.sha256", timeout=30) as response:
        return response.read().decode().split()[0]


def release_dir(version: str, source_id: str) -> str:
    return f"{CHATCHAT_ROOT}/releases/v{version}-{source_id[:12]}"


def source_files(subdir: str) -> list[str]:
    """The files under `subdir` of the release tarball the lab mirror serves (the real v0.2.8 tree)."""
    with urllib.request.urlopen(f"{RAW_URL}{TARBALL}", timeout=60) as response:
        data = response.read()
    prefix = f"Langchain-Chatchat-0.2.8/{subdir}/"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(m.name[len(prefix):] for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix))
