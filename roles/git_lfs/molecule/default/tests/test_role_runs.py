"""Run git_lfs again through ansible-playbook against the molecule node with other inputs."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

MIRROR = os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/")
APT_URL = f"{MIRROR}/repository/apt-debian"
NODE = "git-lfs-node"
PLAYBOOK = """\
- name: Apply git_lfs
  hosts: {node}
  gather_facts: true
  roles:
    - role: git_lfs
"""


def run_role(tmp_path: Path, extra_vars: dict, *options: str) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(node=NODE))
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(extra_vars))
    return subprocess.run(
        ["ansible-playbook", *options, "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", f"@{varfile}", str(playbook)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600, check=False,
    )


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        ({"git_lfs_min_version": "99.0.0"}, "older than git_lfs_min_version 99.0.0"),
        ({"git_lfs_min_version": "three"}, "git_lfs_min_version must be a version"),
        ({"git_lfs_install_method": "tarball"}, "git_lfs_install_method must be one of: distro, mirror"),
        ({"git_lfs_install_method": "mirror"}, "git_lfs_install_method \"mirror\" needs git_lfs_package_url"),
    ],
)
def test_bad_input_fails_with_a_clear_message(host, tmp_path, extra_vars, expected):
    before = host.check_output("sha256sum /etc/gitconfig")
    result = run_role(tmp_path, extra_vars)
    assert result.returncode != 0
    message = " ".join((result.stdout + result.stderr).split())  # the yaml callback wraps long lines
    assert expected in message, message
    assert "changed=0" in result.stdout
    assert host.check_output("sha256sum /etc/gitconfig") == before


def test_check_mode_on_the_converged_host_changes_nothing(host, tmp_path):
    result = run_role(tmp_path, {"git_lfs_concurrent_transfers": 4, "git_lfs_activity_timeout": 120}, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout


def test_lfs_filter_is_restored_once(host, tmp_path):
    # Debian's git-lfs package already runs `git lfs install --system` in its postinst;
    # upstream packages do not. Without the filter the role adds it, then leaves it alone.
    tuning = {"git_lfs_concurrent_transfers": 4, "git_lfs_activity_timeout": 120}
    host.run("git config --system --remove-section filter.lfs")
    assert host.run("git config --system --get filter.lfs.process").rc == 1
    first = run_role(tmp_path, tuning)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in first.stdout, first.stdout
    assert host.check_output("git config --system --get filter.lfs.process") == "git-lfs filter-process"
    assert host.check_output("git config --system --get filter.lfs.required") == "true"
    second = run_role(tmp_path, tuning)
    assert "changed=0" in second.stdout, second.stdout


def _mirror_git_lfs_deb() -> tuple[str, str]:
    """URL and SHA-256 of the git-lfs .deb in the mirror's apt pool (a mirror-hosted package file)."""
    with urllib.request.urlopen(f"{APT_URL}/dists/bookworm/main/binary-amd64/Packages.gz", timeout=30) as resp:
        packages = gzip.decompress(resp.read()).decode()
    for stanza in packages.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Package") == "git-lfs":
            return f"{APT_URL}/{fields['Filename']}", fields["SHA256"]
    raise AssertionError("the lab mirror's apt repository has no git-lfs")


def test_mirror_method_installs_the_package_file(host, tmp_path):
    url, sha256 = _mirror_git_lfs_deb()
    # Start from a host without git-lfs; the system gitconfig keeps the filter.
    host.run("apt-get purge -y -q git-lfs")
    assert not host.package("git-lfs").is_installed

    wrong = run_role(tmp_path, {"git_lfs_install_method": "mirror", "git_lfs_package_url": url,
                                "git_lfs_package_sha256": "0" * 64, "git_lfs_download_retries": 0})
    assert wrong.returncode != 0
    assert "checksum" in (wrong.stdout + wrong.stderr).lower()
    assert not host.package("git-lfs").is_installed

    result = run_role(tmp_path, {"git_lfs_install_method": "mirror", "git_lfs_package_url": url,
                                 "git_lfs_package_sha256": sha256,
                                 "git_lfs_concurrent_transfers": 4, "git_lfs_activity_timeout": 120})
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.package("git-lfs").is_installed
    deb = host.file(f"/var/cache/git-lfs-packages/{url.rsplit('/', 1)[1]}")
    assert deb.sha256sum == sha256
    assert host.run("git lfs version").rc == 0

    again = run_role(tmp_path, {"git_lfs_install_method": "mirror", "git_lfs_package_url": url,
                                "git_lfs_package_sha256": sha256,
                                "git_lfs_concurrent_transfers": 4, "git_lfs_activity_timeout": 120})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout, again.stdout
