"""Checks on a node where nexus_mirror wrote the .condarc, the conda role installed the installer
TEST DOUBLE (molecule/fixtures/conda/) and converge created an environment with that conda."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

MIRROR = os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/")
CONDA_URL = f"{MIRROR}/repository/conda-proxy"
PREFIX = "/opt/conda"
CONDA = f"{PREFIX}/bin/conda"
ENV = "/opt/chatchat/envs/0.2.8"
INSTALLER = "Miniconda3-double-23.11.0-Linux-x86_64.sh"
FIXTURES = Path(os.environ.get("CHATFLEET_ROOT", Path(__file__).resolve().parents[5])) / "molecule" / "fixtures" / "conda"
sys.path.insert(0, str(FIXTURES))
from build_installer_doubles import render  # noqa: E402  (the doubles' own renderer)


def log_lines(host, kind: str) -> list[str]:
    """Lines of the double's invocation log for `installer` or `conda`, without the timestamp."""
    content = host.file(f"{PREFIX}/double.log").content_string
    return [line.split(" ", 1)[1] for line in content.splitlines() if line.split(" ")[1:2] == [kind]]


def test_conda_reports_the_expected_version(host):
    assert host.check_output(f"{CONDA} --version") == "conda 23.11.0"


def test_installer_ran_once_in_batch_mode(host):
    # The converge ran the installer once; test_role_runs.py's rerun shows a second run runs it no more.
    assert log_lines(host, "installer") == [f"installer Miniconda3-double-23.11.0 -b -p {PREFIX} -> 0"]


def test_installer_kept_with_the_pinned_checksum(host):
    pinned = host.ansible.get_variables()["conda_installer_sha256"]
    installer = host.file(f"/var/cache/chatfleet/conda/{INSTALLER}")
    assert installer.is_file
    assert installer.sha256sum == pinned


def test_condarc_from_nexus_mirror_is_in_effect(host):
    config = json.loads(host.check_output(f"{CONDA} config --show channel_alias channels --json"))
    alias = config["channel_alias"]
    assert f"{alias['scheme']}://{alias['location']}" == CONDA_URL
    assert config["channels"] == [f"{CONDA_URL}/main"]
    info = json.loads(host.check_output(f"{CONDA} info --json"))
    assert "/etc/conda/.condarc" in info["config_files"]
    assert info["channels"], info
    assert all(url.startswith(f"{CONDA_URL}/") for url in info["channels"]), info["channels"]


def test_environment_created_through_conda(host):
    node_python = host.check_output("python3 -c 'import platform; print(platform.python_version())'")
    assert node_python.startswith("3.11.")
    assert host.check_output(f"{ENV}/bin/python -c 'import platform; print(platform.python_version())'") == node_python
    # The exact call python_env's conda provider makes, recorded by conda (history) and the double (log).
    call = f"create --yes --quiet --prefix {ENV} python=3.11"
    assert f"# cmd: {CONDA} {call}" in host.file(f"{ENV}/conda-meta/history").content_string
    assert f"conda {call} -> 0" in log_lines(host, "conda")
    assert host.run(f"{ENV}/bin/python -m pip --version").rc == 0


def test_login_shells_get_the_conda_command(host):
    hook = host.file("/etc/profile.d/conda.sh")
    assert hook.is_file and hook.mode == 0o644
    assert host.check_output("bash -lc 'type -t conda; conda --version'").splitlines() == ["function", "conda 23.11.0"]


@pytest.mark.parametrize("version", ["23.10.0", "23.11.0"])
def test_mirror_serves_the_installer_doubles_unchanged(version):
    import hashlib
    import urllib.request

    name = f"Miniconda3-double-{version}-Linux-x86_64.sh"
    url = f"{MIRROR}/repository/raw-hosted/fixtures/conda/{name}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        served = resp.read()
    with urllib.request.urlopen(f"{url}.sha256", timeout=30) as resp:
        published = resp.read().decode().split()[0]
    assert served == render(version).encode(), "run .venv/bin/python lab/mirror.py build"
    assert hashlib.sha256(served).hexdigest() == published
