"""Backups of the converged site through chatfleet (playbooks/backup.yml, restore.yml): a knowledge base
deleted through the real API (its Milvus collection dropped, its database row and documents removed)
answers again from Milvus after a restore; a restore onto live data without --yes, and a corrupted
archive, are refused before anything changes; a backup killed mid-way leaves no archive, the API comes
back, and the next backup clears what it left, is pushed and keeps backup_keep backups.

Runs after test_site.py (file order), which uploaded the lab's document into each GPU node's KB. The
site's Milvus is the pip method on site-milvus-1; the GPU nodes hold the Chatchat data dirs.
"""
from __future__ import annotations

import json
import urllib.request

import pytest
from site_kb import API_PORT, ask_kb, kb_name
from site_tool import chatfleet
from testlib import docker_exec

BACKUP_DIR = "/var/backups/chatfleet"
MILVUS_NODE = "site-milvus-1"
DOCUMENT = "chatfleet-lab-facts.csv"
# Run in the node: SIGKILL the first `cp` (the backup's copy of the data) as soon as it starts.
KILL_THE_COPY = """
import os, time
while True:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == "cp":
                    os.kill(int(pid), 9)
                    raise SystemExit(0)
        except OSError:
            pass
    time.sleep(0.05)
"""


def manifests(node: str) -> list[dict]:
    """The node's whole backups' manifests, oldest first."""
    listing = docker_exec(node, "sh", "-c", f"ls {BACKUP_DIR}/{node}-*.manifest.json 2>/dev/null || true").stdout.split()
    return [json.loads(docker_exec(node, "cat", path).stdout) for path in sorted(listing)]


def knowledge_bases(node: str) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT[node]}/knowledge_base/list_knowledge_bases",
                                timeout=60) as answer:
        return json.load(answer)["data"]


def delete_knowledge_base(node: str, name: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{API_PORT[node]}/knowledge_base/delete_knowledge_base",
                                     data=json.dumps(name).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def inode(node: str, path: str) -> str:
    return docker_exec(node, "stat", "-c", "%i", path).stdout.strip()


@pytest.fixture(scope="module")
def first_backup(tmp_path_factory):
    run = chatfleet(tmp_path_factory.mktemp("backup"), "backup")
    assert run.rc == 0 and run.report["result"] == "successful", run
    return run


def test_the_backup_records_each_nodes_knowledge_bases_and_the_milvus_it_came_from(first_backup):
    for node in API_PORT:
        manifest = manifests(node)[-1]
        assert manifest["components"] == ["chatchat"], manifest["components"]
        assert kb_name(node) in [kb["name"] for kb in manifest["knowledge_bases"]], manifest["knowledge_bases"]
        assert manifest["chatchat_release"].startswith("v0.2.8-"), manifest["chatchat_release"]
        assert any(f["path"].endswith(f"/content/{DOCUMENT}") for f in manifest["files"])
    milvus = manifests(MILVUS_NODE)[-1]
    assert (milvus["components"], milvus["milvus_version"], milvus["milvus_method"]) == (["milvus"], "2.3.5", "pip")
    assert milvus["bytes"] > 0 and milvus["writers_down_s"] is not None
    # The run says where each backup is.
    assert f"{BACKUP_DIR}/{MILVUS_NODE}-{milvus['stamp']}.tar.gz" in first_backup.output, first_backup


@pytest.mark.bad_input
def test_a_restore_onto_live_data_without_yes_is_refused_and_changes_nothing(tmp_path, first_backup):
    before = {node: inode(node, "/var/lib/chatchat") for node in API_PORT}
    run = chatfleet(tmp_path, "restore")
    assert run.rc != 0, run
    for node, path in [("site-l40-1", "/var/lib/chatchat"), (MILVUS_NODE, "/var/lib/milvus")]:
        failure = " ".join(f["msg"] for f in run.report["hosts"][node]["failures"])
        assert f"onto {node} replaces the live data in {path}" in failure and "restore_confirm=true" in failure, failure
    assert {node: inode(node, "/var/lib/chatchat") for node in API_PORT} == before


def test_a_deleted_knowledge_base_answers_from_milvus_again_after_a_restore(tmp_path, first_backup):
    node = "site-l40-1"
    assert delete_knowledge_base(node, kb_name(node))["code"] == 200
    assert kb_name(node) not in knowledge_bases(node)
    run = chatfleet(tmp_path, "restore", "--yes")
    assert run.rc == 0 and run.report["result"] == "successful", run
    for each in API_PORT:
        assert kb_name(each) in knowledge_bases(each)
        assert ask_kb(each, "--ask-only")["cited"] == [DOCUMENT], each
    # The data the restore replaced is kept beside the restored one.
    docker_exec(MILVUS_NODE, "test", "-d", "/var/lib/milvus.pre-restore")
    docker_exec(node, "test", "-d", "/var/lib/chatchat.pre-restore")


@pytest.mark.bad_input
def test_a_corrupted_archive_is_refused_naming_it_and_the_live_data_stays(tmp_path, first_backup):
    node = "site-a100-1"
    archive = f"{BACKUP_DIR}/{node}-{manifests(node)[-1]['stamp']}.tar.gz"
    docker_exec(node, "python3", "-c", "import os,sys; f=open(sys.argv[1],'r+b'); f.seek(os.path.getsize(sys.argv[1])//2);"
                " b=f.read(1); f.seek(-1,1); f.write(bytes([b[0]^255]))", archive)
    before = inode(node, "/var/lib/chatchat")
    run = chatfleet(tmp_path, "restore", "--yes", "--limit", node)
    assert run.rc != 0, run
    failure = " ".join(f["msg"] for f in run.report["hosts"][node]["failures"])
    assert f"{archive} is corrupted: sha256" in failure and "Nothing was restored" in failure, failure
    assert inode(node, "/var/lib/chatchat") == before
    docker_exec(node, "rm", archive, archive.replace(".tar.gz", ".manifest.json"))


@pytest.mark.fault
def test_a_backup_killed_mid_way_leaves_no_archive_and_the_api_comes_back(tmp_path, first_backup):
    node = "site-l40-1"
    backups_before = [m["stamp"] for m in manifests(node)]
    # Enough data that the copy runs for a while, and a killer in the node.
    docker_exec(node, "sh", "-c", "head -c 300000000 /dev/urandom > /var/lib/chatchat/fault-ballast.bin")
    docker_exec(node, "systemd-run", "--unit", "kill-backup-copy", "--collect", "python3", "-c", KILL_THE_COPY)
    try:
        killed = chatfleet(tmp_path / "killed", "backup", "--limit", node)
    finally:
        docker_exec(node, "systemctl", "stop", "kill-backup-copy", check=False)
        docker_exec(node, "rm", "-f", "/var/lib/chatchat/fault-ballast.bin")
    assert killed.rc != 0, killed
    failure = " ".join(f["msg"] for f in killed.report["hosts"][node]["failures"])
    assert "copying /var/lib/chatchat into" in failure and "killed by signal 9" in failure, failure
    assert [m["stamp"] for m in manifests(node)] == backups_before
    left = docker_exec(node, "sh", "-c", f"ls -a {BACKUP_DIR}").stdout.split()
    assert not [name for name in left if name.endswith(".tar.gz") and name[len(node) + 1:-7] not in backups_before], left
    assert any(name.startswith(f".work-{node}-") for name in left), left
    # The API was started again in the same run, and answers from the knowledge base.
    assert docker_exec(node, "systemctl", "is-active", "chatchat-api").stdout.strip() == "active"
    assert ask_kb(node, "--ask-only")["cited"] == [DOCUMENT]
    # The next backup removes what the killed one left, completes, and is pushed (rsync, here to a
    # directory of the node) and pruned to backup_keep.
    again = chatfleet(tmp_path / "again", "backup", "--limit", node, "-e", "backup_push_dest=/var/backups/offsite/",
                      "-e", "backup_keep=1")
    assert again.rc == 0, again
    left = docker_exec(node, "sh", "-c", f"ls -a {BACKUP_DIR}").stdout.split()
    assert not any(name.startswith(".work-") or name.endswith(".partial") for name in left), left
    newest = manifests(node)
    assert len(newest) == 1 and newest[0]["stamp"] not in backups_before, newest
    pushed = docker_exec(node, "ls", "/var/backups/offsite").stdout.split()
    assert pushed == [f"{node}-{newest[0]['stamp']}.manifest.json", f"{node}-{newest[0]['stamp']}.tar.gz"], pushed
