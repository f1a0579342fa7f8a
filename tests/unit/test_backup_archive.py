"""The backup role's archive logic (roles/backup/module_utils/data_archive.py) on real directories, tar
archives and a real SQLite database in Chatchat's schema: a round trip keeps every byte, owner and
mode; a flipped byte, a truncated archive, another Milvus version or method, a missing component and
live data without confirmation are each refused before anything changes; what a killed run left is
never taken for a backup and is removed by the next one; retention keeps the newest."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("data_archive", ROOT / "roles/backup/module_utils/data_archive.py")
archive_lib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(archive_lib)

HOST = "lab-l40-1"
META = {"milvus_version": "2.3.5", "milvus_method": "pip", "chatchat_release": "v0.2.8-0123456789ab"}


def make_data(root: Path) -> dict[str, str]:
    milvus = root / "milvus"
    (milvus / "etcd" / "member").mkdir(parents=True)
    (milvus / "etcd" / "member" / "db").write_bytes(os.urandom(200_000))
    (milvus / "data" / "insert_log").mkdir(parents=True)
    (milvus / "data" / "insert_log" / "segment-1").write_bytes(b"vectors" * 5000)
    (milvus / "data" / "insert_log" / "segment-1").chmod(0o640)
    chatchat = root / "chatchat"
    content = chatchat / "knowledge_base" / "samples" / "content"
    content.mkdir(parents=True)
    (content / "guide.md").write_text("# The guide\nchatfleet backs up knowledge bases.\n")
    with sqlite3.connect(chatchat / "knowledge_base" / "info.db") as db:
        db.execute("CREATE TABLE knowledge_base (id INTEGER PRIMARY KEY, kb_name VARCHAR(50), kb_info VARCHAR(200), "
                   "vs_type VARCHAR(50), embed_model VARCHAR(50), file_count INTEGER, create_time DATETIME)")
        db.execute("INSERT INTO knowledge_base (kb_name, vs_type, embed_model, file_count) "
                   "VALUES ('samples', 'milvus', 'bge-small-zh', 1), ('faq', 'milvus', 'bge-small-zh', 0)")
    (chatchat / "tmp").mkdir()
    os.symlink("knowledge_base/info.db", chatchat / "db-link")
    return {"milvus": str(milvus), "chatchat": str(chatchat)}


def tree(path: Path) -> dict[str, tuple]:
    """Every entry's type, mode, owner and content (or link target) under path."""
    found = {}
    for entry in sorted(path.rglob("*")):
        st = entry.lstat()
        body = os.readlink(entry) if entry.is_symlink() else entry.read_bytes() if entry.is_file() else None
        found[entry.relative_to(path).as_posix()] = (st.st_mode, st.st_uid, st.st_gid, body)
    return found


def back_up(backup_dir: Path, sources: dict[str, str], stamp: str = "20261207T101500Z") -> dict:
    archive_lib.snapshot(str(backup_dir), HOST, stamp, sources)
    return archive_lib.archive(str(backup_dir), HOST, stamp, META, 1)


@pytest.fixture
def backed_up(tmp_path):
    sources = make_data(tmp_path / "live")
    backup_dir = tmp_path / "backups"
    result = back_up(backup_dir, sources)
    return tmp_path, sources, backup_dir, result


def restore(sources: dict[str, str], manifest_path: Path, expect: dict | None = None, confirm: bool = True) -> dict:
    manifest = archive_lib.verify(manifest_path, expect if expect is not None else
                                  {"milvus_version": "2.3.5", "milvus_method": "pip"}, sources)
    if archive_lib.live(sources) and not confirm:
        raise archive_lib.BackupError("live data")
    archive_lib.stage(manifest, manifest_path, sources)
    return archive_lib.swap(manifest, sources)


def test_the_manifest_lists_every_file_the_versions_and_the_knowledge_bases(backed_up):
    _, sources, backup_dir, result = backed_up
    manifest = json.loads(Path(result["manifest_path"]).read_text())
    assert manifest["components"] == ["chatchat", "milvus"]
    assert {kb["name"]: kb["files"] for kb in manifest["knowledge_bases"]} == {"faq": 0, "samples": 1}
    assert manifest["milvus_version"] == "2.3.5" and manifest["chatchat_release"] == META["chatchat_release"]
    files = {f["path"]: f for f in manifest["files"]}
    assert files["milvus/data/insert_log/segment-1"]["size"] == 35000
    with tarfile.open(result["archive"]) as tar:
        inside = json.load(tar.extractfile(archive_lib.MEMBER_MANIFEST))
        assert sorted(m.name for m in tar if m.isreg() and m.name != archive_lib.MEMBER_MANIFEST) == sorted(files)
    assert inside["files"] == manifest["files"]
    assert manifest["archive_sha256"] == archive_lib.sha256_file(Path(result["archive"]))
    # The working copy is gone once the archive is whole.
    assert sorted(p.name for p in backup_dir.iterdir() if p.name != ".lock") == [
        f"{HOST}-20261207T101500Z.manifest.json", f"{HOST}-20261207T101500Z.tar.gz"]


def test_a_restore_brings_back_every_byte_mode_and_link_and_keeps_the_replaced_data(backed_up):
    tmp_path, sources, _, result = backed_up
    before = {c: tree(Path(p)) for c, p in sources.items()}
    Path(sources["chatchat"], "knowledge_base", "samples", "content", "guide.md").write_text("overwritten by mistake\n")
    kept = restore(sources, Path(result["manifest_path"]))
    assert {c: tree(Path(p)) for c, p in sources.items()} == before
    assert Path(kept["chatchat"], "knowledge_base", "samples", "content", "guide.md").read_text() == "overwritten by mistake\n"
    # Onto a host whose data is gone (a lost disk): no confirmation needed, nothing to keep.
    for path in list(sources.values()) + list(kept.values()):
        shutil.rmtree(path)
    assert restore(sources, Path(result["manifest_path"]), confirm=False) == {}
    assert {c: tree(Path(p)) for c, p in sources.items()} == before


def test_a_flipped_byte_in_the_archive_is_refused_naming_it_and_the_live_data_stays(backed_up):
    _, sources, _, result = backed_up
    live_before = {c: tree(Path(p)) for c, p in sources.items()}
    data = bytearray(Path(result["archive"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(result["archive"]).write_bytes(bytes(data))
    with pytest.raises(archive_lib.BackupError, match=rf"{result['archive']} is corrupted: sha256"):
        restore(sources, Path(result["manifest_path"]))
    assert {c: tree(Path(p)) for c, p in sources.items()} == live_before


def test_a_file_that_does_not_match_its_manifest_entry_is_refused_and_no_staging_is_left(backed_up):
    """An archive whose own sha256 was recorded for bad content (rewritten after the backup): each
    file's check catches it while extracting, and the staging directories are removed."""
    tmp_path, sources, _, result = backed_up
    manifest_path = Path(result["manifest_path"])
    manifest = json.loads(manifest_path.read_text())
    entry = next(f for f in manifest["files"] if f["path"].endswith("guide.md"))
    entry["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(archive_lib.BackupError, match=r"chatchat/knowledge_base/samples/content/guide.md does not match"):
        restore(sources, manifest_path)
    assert sorted(p.name for p in (tmp_path / "live").iterdir()) == ["chatchat", "milvus"]


@pytest.mark.parametrize(("expect", "refusal"), [
    ({"milvus_version": "2.4.0", "milvus_method": "pip"}, r"holds milvus_version '2.3.5' and this host runs '2.4.0'"),
    ({"milvus_version": "2.3.5", "milvus_method": "compose"}, r"holds milvus_method 'pip' and this host runs 'compose'"),
])
def test_a_backup_of_another_milvus_version_or_method_is_refused(backed_up, expect, refusal):
    _, sources, _, result = backed_up
    with pytest.raises(archive_lib.BackupError, match=refusal):
        restore(sources, Path(result["manifest_path"]), expect=expect)


def test_a_backup_without_a_component_of_the_host_is_refused(tmp_path):
    sources = make_data(tmp_path / "live")
    only_chatchat = {"chatchat": sources["chatchat"]}
    result = back_up(tmp_path / "backups", only_chatchat)
    with pytest.raises(archive_lib.BackupError, match=r"holds chatchat but this host also needs milvus"):
        archive_lib.verify(Path(result["manifest_path"]), {}, sources)


def test_what_a_killed_run_left_is_never_a_backup_and_the_next_run_removes_it(backed_up):
    _, sources, backup_dir, first = backed_up
    # A run killed while packing: its working copy and its partial archive, no manifest.
    killed = archive_lib.names(str(backup_dir), HOST, "20261207T111500Z")
    killed["work"].mkdir()
    Path(f"{killed['archive']}.partial").write_bytes(b"\x1f\x8b half an archive")
    assert archive_lib.find(str(backup_dir), HOST, "latest") == Path(first["manifest_path"])
    with pytest.raises(archive_lib.BackupError, match="does not exist"):
        archive_lib.find(str(backup_dir), HOST, "20261207T111500Z")
    # Another host's name that starts with this one's is not this host's.
    other = backup_dir / f"{HOST}-b-20261207T111500Z.tar.gz.partial"
    other.write_bytes(b"")
    assert archive_lib.leftovers(str(backup_dir), HOST) == sorted([Path(f"{killed['archive']}.partial"), killed["work"]])
    second = archive_lib.snapshot(str(backup_dir), HOST, "20261207T121500Z", sources)
    assert sorted(second["removed_leftovers"]) == sorted([f"{killed['archive']}.partial", str(killed["work"])])
    assert other.exists()


def test_retention_keeps_the_newest_whole_backups(tmp_path):
    sources = make_data(tmp_path / "live")
    backup_dir = tmp_path / "backups"
    stamps = [f"2026120{day}T101500Z" for day in range(1, 5)]
    for stamp in stamps:
        back_up(backup_dir, sources, stamp)
    removed = archive_lib.prune(str(backup_dir), HOST, 2)
    assert removed == [str(archive_lib.names(str(backup_dir), HOST, s)["archive"]) for s in stamps[:2]]
    assert [p.name for p in archive_lib.complete_backups(str(backup_dir), HOST)] == [
        f"{HOST}-{s}.manifest.json" for s in stamps[2:]]
    assert not archive_lib.names(str(backup_dir), HOST, stamps[0])["archive"].exists()


def test_a_second_backup_run_at_the_same_time_fails_at_once(backed_up):
    _, sources, backup_dir, _ = backed_up
    with archive_lib._Lock(str(backup_dir)):
        with pytest.raises(archive_lib.BackupError, match="another backup or restore holds"):
            archive_lib.snapshot(str(backup_dir), HOST, "20261207T131500Z", sources)
