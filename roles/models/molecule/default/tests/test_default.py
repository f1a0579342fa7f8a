"""State of both nodes after converge: each model at its pinned revision, verified against the mirror."""
from __future__ import annotations

import pytest
from conftest import CACHE, MODELS, ROOT_PATH, STORE


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_links_to_its_pinned_revision(host, lab, name):
    link = host.file(f"{ROOT_PATH}/{name}")
    assert link.is_symlink
    assert link.linked_to == f"{STORE}/{name}/{lab.revision(name)}"
    assert host.file(f"{STORE}/{name}/{lab.revision(name)}.verified.json").is_file


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_file_matches_the_mirror(host, lab, name):
    """sha256 on the node against the LFS pointers read from the mirror by the test host itself."""
    checkout = f"{ROOT_PATH}/{name}"
    expected = lab.files(name)
    assert any(f["lfs"] for f in expected.values())
    for path, want in expected.items():
        node_file = host.file(f"{checkout}/{path}")
        assert node_file.is_file, path
        assert node_file.size == want["size"], path
        if want["lfs"]:
            assert node_file.sha256sum == want["sha256"], path
        else:
            blob = host.check_output(f"git hash-object --no-filters {checkout}/{path}")
            assert blob == want["blob"], path


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weights_are_stored_once(host, lab, name):
    """No LFS object store is left next to the checkout, so each weight file exists once on disk."""
    revision_dir = f"{STORE}/{name}/{lab.revision(name)}"
    assert not host.file(f"{revision_dir}/.git/lfs/objects").exists
    for path, want in lab.files(name).items():
        if want["lfs"]:
            assert host.check_output(f"stat -c %h {revision_dir}/{path}") == "1", path


def test_no_pull_is_left_in_progress(host):
    assert host.check_output(f"find {STORE} -maxdepth 2 -name '.staging-*'") == ""


def test_services_get_the_offline_environment(host):
    env = host.file("/etc/chatfleet/models.env")
    assert env.mode == 0o644
    lines = {line for line in env.content_string.splitlines() if not line.startswith("#")}
    assert lines == {"HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "HF_DATASETS_OFFLINE=1"}


@pytest.mark.security
def test_cache_serves_its_store_read_only_as_a_non_root_user(host):
    if host.backend.get_hostname() != CACHE:
        pytest.skip("only the cache host serves its store")
    unit = host.service("chatfleet-models-cache")
    assert unit.is_running and unit.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value chatfleet-models-cache")
    assert host.check_output(f"stat -c %u /proc/{pid}") != "0"
    assert host.socket("tcp://127.0.0.1:18873").is_listening
    assert host.run("systemd-analyze verify /etc/systemd/system/chatfleet-models-cache.service").rc == 0
    # The module lists models; a client can read a verified file but cannot write.
    assert "models" in host.check_output("rsync rsync://127.0.0.1:18873/")
    assert host.run("rsync /etc/hostname rsync://127.0.0.1:18873/models/").rc != 0
