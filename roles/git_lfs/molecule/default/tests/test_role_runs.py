"""Run git_lfs again through ansible-playbook against the molecule node with other inputs."""
from __future__ import annotations

import gzip
import urllib.request

import pytest
from testlib import MIRROR_URL, PlaybookRun, run_role

APT_URL = f"{MIRROR_URL}/repository/apt-debian"
NODE = "git-lfs-node"
TUNING = {"git_lfs_concurrent_transfers": 4, "git_lfs_activity_timeout": 120}


def changed(run: PlaybookRun) -> int:
    """Tasks the run changed on the node; a run that never reached the node's recap fails the test."""
    assert NODE in run.recap, run
    return run.recap[NODE]["changed"]


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        ({"git_lfs_min_version": "99.0.0"}, "older than git_lfs_min_version 99.0.0"),
        ({"git_lfs_min_version": "three"}, "git_lfs_min_version must be a version"),
        ({"git_lfs_install_method": "tarball"}, "git_lfs_install_method must be one of: distro, mirror"),
        ({"git_lfs_install_method": "mirror"}, "git_lfs_install_method \"mirror\" needs git_lfs_package_url"),
    ],
)
@pytest.mark.bad_input
def test_bad_input_fails_with_a_clear_message(host, extra_vars, expected):
    before = host.check_output("sha256sum /etc/gitconfig")
    run = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=extra_vars)
    assert run.rc != 0, run
    assert expected in run.flat, run
    assert changed(run) == 0, run
    assert host.check_output("sha256sum /etc/gitconfig") == before


@pytest.mark.check_mode
def test_check_mode_on_the_converged_host_changes_nothing(host):
    run = run_role("git_lfs", "--check", hosts=NODE, gather_facts=True, extra_vars=TUNING)
    assert run.rc == 0, run
    assert changed(run) == 0, run


def test_lfs_filter_is_restored_once(host):
    # Debian's git-lfs package already runs `git lfs install --system` in its postinst;
    # upstream packages do not. Without the filter the role adds it, then leaves it alone.
    host.run("git config --system --remove-section filter.lfs")
    assert host.run("git config --system --get filter.lfs.process").rc == 1
    first = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=TUNING)
    assert first.rc == 0, first
    assert changed(first) == 1, first
    assert host.check_output("git config --system --get filter.lfs.process") == "git-lfs filter-process"
    assert host.check_output("git config --system --get filter.lfs.required") == "true"
    second = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=TUNING)
    assert changed(second) == 0, second


def _mirror_git_lfs_deb() -> tuple[str, str]:
    """URL and SHA-256 of the git-lfs .deb in the mirror's apt pool (a mirror-hosted package file)."""
    with urllib.request.urlopen(f"{APT_URL}/dists/bookworm/main/binary-amd64/Packages.gz", timeout=30) as resp:
        packages = gzip.decompress(resp.read()).decode()
    for stanza in packages.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Package") == "git-lfs":
            return f"{APT_URL}/{fields['Filename']}", fields["SHA256"]
    raise AssertionError("the lab mirror's apt repository has no git-lfs")


def test_mirror_method_installs_the_package_file(host):
    url, sha256 = _mirror_git_lfs_deb()
    # Start from a host without git-lfs; the system gitconfig keeps the filter.
    host.run("apt-get purge -y -q git-lfs")
    assert not host.package("git-lfs").is_installed

    wrong = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars={
        "git_lfs_install_method": "mirror", "git_lfs_package_url": url,
        "git_lfs_package_sha256": "0" * 64, "git_lfs_download_retries": 0})
    assert wrong.rc != 0, wrong
    assert "checksum" in wrong.output.lower(), wrong
    assert not host.package("git-lfs").is_installed

    mirror = {"git_lfs_install_method": "mirror", "git_lfs_package_url": url, "git_lfs_package_sha256": sha256, **TUNING}
    run = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=mirror)
    assert run.rc == 0, run
    assert host.package("git-lfs").is_installed
    deb = host.file(f"/var/cache/git-lfs-packages/{url.rsplit('/', 1)[1]}")
    assert deb.sha256sum == sha256
    assert host.run("git lfs version").rc == 0

    again = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=mirror)
    assert again.rc == 0, again
    assert changed(again) == 0, again
