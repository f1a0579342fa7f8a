"""Checks on a node where nexus_mirror (exclusive apt from the lab mirror) and git_lfs ran."""
from __future__ import annotations

import pytest
from testlib import MIRROR_URL

APT_URL = f"{MIRROR_URL}/repository/apt-debian"
MODEL_REPO = f"{MIRROR_URL}/repository/models/lab/tiny-gpt2.git"
CLONE = "/tmp/git-lfs-test-clone"


@pytest.mark.parametrize("package", ["git", "git-lfs"])
def test_packages_installed_from_the_mirror(host, package):
    assert host.package(package).is_installed
    policy = host.check_output(f"apt-cache policy {package}")
    assert f" {APT_URL} bookworm/main" in policy


def test_git_lfs_version_is_recent_enough(host):
    out = host.check_output("git lfs version")
    version = out.split()[0].split("/")[1]
    assert tuple(int(p) for p in version.split(".")) >= (3, 0, 0)


def test_git_lfs_env_shows_the_system_filter(host):
    env = host.check_output("cd / && git lfs env")
    assert 'git config filter.lfs.process = "git-lfs filter-process"' in env
    assert 'git config filter.lfs.smudge = "git-lfs smudge -- %f"' in env
    assert 'git config filter.lfs.clean = "git-lfs clean -- %f"' in env
    # The scenario sets git_lfs_concurrent_transfers: 4 and git_lfs_activity_timeout: 120.
    assert "ConcurrentTransfers=4" in env


def test_system_gitconfig(host):
    assert host.check_output("git config --system --get filter.lfs.required") == "true"
    assert host.check_output("git config --system --get filter.lfs.process") == "git-lfs filter-process"
    assert host.check_output("git config --system --get lfs.concurrenttransfers") == "4"
    assert host.check_output("git config --system --get lfs.activitytimeout") == "120"


def test_clone_brings_the_real_model(host):
    host.run(f"rm -rf {CLONE}")
    clone = host.run(f"git clone {MODEL_REPO} {CLONE}")
    assert clone.rc == 0, clone.stderr
    model = host.file(f"{CLONE}/model.safetensors")
    assert model.is_file
    # A pointer file is about 130 bytes and starts with the LFS spec line.
    assert model.size > 1024
    assert not model.content[:40].startswith(b"version https://git-lfs")
    # `git lfs ls-files -l`: "<oid> * <path>"; "*" means the content is checked out.
    listing = host.check_output(f"git -C {CLONE} lfs ls-files -l")
    oid, marker, path = listing.split("\n")[0].split(" ", 2)
    assert (marker, path) == ("*", "model.safetensors")
    assert host.check_output(f"sha256sum {CLONE}/model.safetensors").split()[0] == oid
