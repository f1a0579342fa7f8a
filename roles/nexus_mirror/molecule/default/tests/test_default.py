"""Checks on a node that nexus_mirror pointed at the lab mirror (exclusive apt)."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import yaml
from testlib import MIRROR_URL, PYPI_INDEX_URL

MIRROR_NETLOC = urlsplit(MIRROR_URL).netloc
CONDA_URL = f"{MIRROR_URL}/repository/conda-proxy"
APT_URL = f"{MIRROR_URL}/repository/apt-debian/"
# A project the lab mirror's PyPI endpoint serves (lab/mirror/pypi-packages.txt).
PYPI_PROJECT = "requests"


def test_pip_conf(host):
    conf = host.file("/etc/pip.conf")
    assert conf.is_file
    assert conf.user == "root"
    assert conf.mode == 0o644
    assert f"index-url = {PYPI_INDEX_URL}" in conf.content_string
    # Plain-http index: the host is trusted automatically, with its port.
    assert f"trusted-host = {MIRROR_NETLOC}\n" in conf.content_string


def test_pip_config_list_shows_the_index(host):
    out = host.check_output("python3 -m pip config list")
    assert f"global.index-url='{PYPI_INDEX_URL}'" in out
    assert f"global.trusted-host='{MIRROR_NETLOC}'" in out


def test_pip_downloads_through_the_mirror(host):
    dest = "/tmp/nexus-mirror-pip-download"
    host.run(f"rm -rf {dest}")
    cmd = host.run(f"python3 -m pip download --no-deps --no-cache-dir -d {dest} {PYPI_PROJECT}")
    assert cmd.rc == 0, cmd.stderr
    assert f"Looking in indexes: {PYPI_INDEX_URL}" in cmd.stdout
    files = host.check_output(f"ls {dest}").split()
    assert any(f.startswith(f"{PYPI_PROJECT}-") for f in files), files


def test_condarc(host):
    condarc = host.file("/etc/conda/.condarc")
    assert condarc.is_file
    assert condarc.mode == 0o644
    data = yaml.safe_load(condarc.content_string)
    assert data["channel_alias"] == CONDA_URL
    assert data["channels"] == [f"{CONDA_URL}/main"]
    assert "defaults" not in data["channels"]
    assert data["default_channels"] == [f"{CONDA_URL}/main", f"{CONDA_URL}/r"]
    assert data["auto_update_conda"] is False


def test_apt_sources_file(host):
    sources = host.file("/etc/apt/sources.list.d/nexus-mirror.sources")
    assert sources.is_file
    assert sources.mode == 0o644
    content = sources.content_string
    assert f"URIs: {APT_URL}" in content
    assert "Suites: bookworm" in content
    assert "Components: main" in content
    assert "Trusted: yes" in content


def test_distro_sources_moved_to_backup(host):
    assert not host.file("/etc/apt/sources.list.d/debian.sources").exists
    assert not host.file("/etc/apt/sources.list").exists
    assert host.file("/etc/apt/nexus-mirror-backup").is_directory
    # The base image (debootstrap) ships /etc/apt/sources.list: kept, not deleted.
    backup = host.file("/etc/apt/nexus-mirror-backup/sources.list")
    assert backup.is_file
    assert "deb " in backup.content_string


def test_no_credentials_file_without_credentials(host):
    assert not host.file("/etc/apt/auth.conf.d/nexus-mirror.conf").exists


def test_apt_index_targets_only_the_mirror(host):
    uris = host.check_output("apt-get indextargets --format '$(URI)'").split()
    assert uris, "apt has no index targets"
    assert all(u.startswith(APT_URL) for u in uris), uris


def test_apt_update_uses_only_the_mirror(host):
    cmd = host.run("apt-get update")
    assert cmd.rc == 0, cmd.stderr
    fetched = [line for line in cmd.stdout.splitlines() if line.startswith(("Get:", "Hit:", "Ign:", "Err:"))]
    assert fetched
    assert all(f" {APT_URL.rstrip('/')} " in line for line in fetched), fetched
    policy = host.check_output("apt-cache policy")
    repo_lines = [line for line in policy.splitlines() if "http" in line]
    assert repo_lines
    assert all(MIRROR_NETLOC in line for line in repo_lines), repo_lines


@pytest.mark.parametrize("package", ["python3-pip"])
def test_package_installed_from_the_mirror(host, package):
    assert host.package(package).is_installed
    policy = host.check_output(f"apt-cache policy {package}")
    assert f" {APT_URL.rstrip('/')} bookworm/main" in policy
