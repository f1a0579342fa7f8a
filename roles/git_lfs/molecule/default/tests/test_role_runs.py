"""Run git_lfs again through ansible-playbook against the molecule node with other inputs."""
from __future__ import annotations

import gzip
import urllib.request
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from testlib import MIRROR_URL, PlaybookRun, run_playbook, run_role

APT_URL = f"{MIRROR_URL}/repository/apt-debian"
NODE = "git-lfs-node"
TUNING = {"git_lfs_concurrent_transfers": 4, "git_lfs_activity_timeout": 120}
CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"


def changed(run: PlaybookRun) -> int:
    """Tasks the run changed on the node; a run that never reached the node's recap fails the test."""
    assert NODE in run.recap, run
    return run.recap[NODE]["changed"]


# Right after the converge, before any test changes the node: molecule's own idempotence step, as
# a marked test (every scenario proves its idempotence in one, counted in the proof report).
@pytest.mark.idempotence
def test_a_second_converge_changes_nothing():
    run = run_playbook(CONVERGE)
    assert run.rc == 0 and run.changed == 0, run
    assert NODE in run.recap, run


# The settings rules are unit-tested case by case (tests/unit/plugins/filter/test_git_lfs.py). Two
# validation paths, one case each: a setting's form (preflight) and the installed git-lfs against
# git_lfs_min_version (after the install step, which has nothing to do here). The run stops before any
# change and the failed task's message names the setting and the host.
@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        ({"git_lfs_min_version": "99.0.0"}, "older than git_lfs_min_version 99.0.0"),
        ({"git_lfs_install_method": "mirror"},
         f"git_lfs_install_method \"mirror\" needs git_lfs_package_url, the http(s) URL of a .deb package on the mirror"
         f" (got ''), and git_lfs_package_sha256, its 64-hex-digit SHA-256 (got ''), for host {NODE}"),
    ],
)
@pytest.mark.bad_input
def test_bad_input_fails_with_a_clear_message(host, extra_vars, expected):
    before = host.check_output("sha256sum /etc/gitconfig")
    run = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=extra_vars)
    assert run.rc != 0, run
    message = run.failure(NODE)["msg"]
    assert expected in message, message
    assert NODE in message, message
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


@pytest.mark.fault
def test_mirror_method_cut_mid_download_installs_nothing_then_the_next_run_installs(host):
    """The mirror drops the connection 1 MiB into the .deb (faultproxy; the pin is right): nothing is
    installed and no partial file is kept; the next run (mirror back) installs it, the one after
    changes nothing."""
    url, sha256 = _mirror_git_lfs_deb()
    name = url.rsplit("/", 1)[1]
    # Start from a host without git-lfs; the system gitconfig keeps the filter.
    host.run("apt-get purge -y -q git-lfs")
    assert not host.package("git-lfs").is_installed
    gitconfig = host.check_output("sha256sum /etc/gitconfig")

    mirror = {"git_lfs_install_method": "mirror", "git_lfs_package_url": url, "git_lfs_package_sha256": sha256, **TUNING}
    with FaultProxy(MIRROR_URL, break_files=f"/{name}", keep_bytes=1 << 20) as proxy:
        cut = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars={
            **mirror, "git_lfs_package_url": url.replace(MIRROR_URL, proxy.url), "git_lfs_download_retries": 0})
    assert proxy.broken, f"the fault was not injected: {proxy.passed}"
    assert cut.rc != 0, cut
    assert cut.failure(NODE)["task"].endswith("Download the git-lfs package from the mirror"), cut.failure(NODE)
    assert not host.package("git-lfs").is_installed
    assert not host.file(f"/var/cache/git-lfs-packages/{name}").exists
    assert host.check_output("sha256sum /etc/gitconfig") == gitconfig

    run = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=mirror)
    assert run.rc == 0, run
    assert host.package("git-lfs").is_installed
    deb = host.file(f"/var/cache/git-lfs-packages/{name}")
    assert deb.sha256sum == sha256
    assert host.run("git lfs version").rc == 0

    again = run_role("git_lfs", hosts=NODE, gather_facts=True, extra_vars=mirror)
    assert again.rc == 0, again
    assert changed(again) == 0, again
