"""Unit tests for roles/models/module_utils/model_store.py: how the models role judges a file."""
from __future__ import annotations

import hashlib
import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("model_store", ROOT / "roles/models/module_utils/model_store.py")
model_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_store)

CONTENT = b"\x00weights\x01" * 1000
OID = hashlib.sha256(CONTENT).hexdigest()
POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize {len(CONTENT)}\n".encode()


def test_pointer_is_parsed_and_other_content_is_not():
    assert model_store.parse_lfs_pointer(POINTER) == (OID, len(CONTENT))
    assert model_store.parse_lfs_pointer(b'{"model_type": "gpt2"}') is None
    assert model_store.parse_lfs_pointer(POINTER.replace(b"sha256:", b"md5:")) is None
    assert model_store.parse_lfs_pointer(POINTER + b"x" * 1024) is None


def test_blob_id_is_what_git_computes(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"vocab_size": 300}\n')
    expected = subprocess.run(["git", "hash-object", "--no-filters", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert model_store.git_blob_id(str(path), path.stat().st_size) == expected


def test_bad_files_names_each_kind_of_damage(tmp_path):
    lfs = {"path": "model.safetensors", "kind": "lfs", "digest": OID, "size": len(CONTENT)}
    (tmp_path / "model.safetensors").write_bytes(CONTENT)
    assert model_store.bad_files(str(tmp_path), [lfs], full=True) == {}

    (tmp_path / "model.safetensors").write_bytes(POINTER)
    assert model_store.bad_files(str(tmp_path), [lfs], full=True) == {
        "model.safetensors": "an LFS pointer instead of the content"}

    (tmp_path / "model.safetensors").write_bytes(CONTENT[:-1])
    assert "size" in model_store.bad_files(str(tmp_path), [lfs], full=False)["model.safetensors"]

    (tmp_path / "model.safetensors").write_bytes(b"X" + CONTENT[1:])
    assert model_store.bad_files(str(tmp_path), [lfs], full=False) == {}  # same size: only hashing sees it
    assert "does not match its LFS pointer's sha256" in model_store.bad_files(str(tmp_path), [lfs], full=True)[
        "model.safetensors"]

    (tmp_path / "model.safetensors").unlink()
    assert model_store.bad_files(str(tmp_path), [lfs], full=True) == {"model.safetensors": "missing"}


def test_active_revision_is_read_from_the_link(tmp_path):
    store, root = tmp_path / "store", tmp_path / "root"
    (store / "m" / "abc").mkdir(parents=True)
    root.mkdir()
    (root / "m").symlink_to(store / "m" / "abc")
    assert model_store.active_revision(str(root / "m"), str(store), "m") == "abc"
    assert model_store.is_present(str(root / "m"), str(store), "m", "abc") is False  # no record yet
    (store / "m" / "abc.verified.json").write_text('{"files": []}')
    assert model_store.is_present(str(root / "m"), str(store), "m", "abc") is True
    (root / "other").symlink_to(tmp_path)
    assert model_store.active_revision(str(root / "other"), str(store), "other") is None
