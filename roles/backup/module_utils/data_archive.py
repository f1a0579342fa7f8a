"""Backup archives of a node's data (the chatfleet_backup module's logic; stdlib, Python 3.6+).

A backup is two files in the backup directory, named after the host and the run's time stamp:
  <host>-<stamp>.tar.gz          the data of each component (milvus/, chatchat/), read from a copy
                                 taken while the writers were stopped, and MANIFEST.json last
  <host>-<stamp>.manifest.json   the same manifest plus the archive's size and sha256
The manifest is written after the archive is complete and renamed into place, so a backup with a
manifest is whole; anything else (`*.partial`, `.work-*`) is what a killed run left, removed by the
next backup. A restore checks the archive's sha256 before reading it and each file's sha256 while
extracting it into a staging directory beside the live one; the live data is only swapped (and kept
as <path>.pre-restore) once every file matched.
"""
import fcntl
import grp
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any, Dict, List

FORMAT = 1
ARCHIVE_SUFFIX = ".tar.gz"
MANIFEST_SUFFIX = ".manifest.json"
MEMBER_MANIFEST = "MANIFEST.json"
PRE_RESTORE_SUFFIX = ".pre-restore"
_CHUNK = 1 << 20
# The run's time stamp as the playbooks write it (UTC, sorts by time).
STAMP = r"\d{8}T\d{6}Z"


class BackupError(Exception):
    """A refusal or failure, with the message the operator reads."""


def names(backup_dir: str, host: str, stamp: str) -> Dict[str, Path]:
    base = Path(backup_dir) / f"{host}-{stamp}"
    return {"archive": Path(f"{base}{ARCHIVE_SUFFIX}"), "manifest": Path(f"{base}{MANIFEST_SUFFIX}"),
            "work": Path(backup_dir) / f".work-{host}-{stamp}"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class _Lock:
    """One backup or restore at a time per backup directory (a second run fails at once)."""

    def __init__(self, backup_dir: str):
        self.path = Path(backup_dir) / ".lock"

    def __enter__(self) -> "_Lock":
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise BackupError(f"another backup or restore holds {self.path}; wait for it to finish") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()


def _named(backup_dir: str, pattern: str) -> List[Path]:
    """The entries of the backup directory whose whole name matches `pattern`, sorted."""
    root = Path(backup_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if re.fullmatch(pattern, p.name))


def leftovers(backup_dir: str, host: str) -> List[Path]:
    """What killed runs of this host left: partial files and working copies."""
    return _named(backup_dir, rf"(\.work-{re.escape(host)}-{STAMP}|{re.escape(host)}-{STAMP}\..*\.partial)")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        _unlink(path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def snapshot(backup_dir: str, host: str, stamp: str, sources: Dict[str, str]) -> Dict[str, Any]:
    """Copy each component's directory (owners, modes, times kept) while its writers are stopped.

    Removes what earlier killed runs left first. Returns the copied bytes and the seconds taken."""
    Path(backup_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    with _Lock(backup_dir):
        removed = [str(p) for p in leftovers(backup_dir, host)]
        for path in leftovers(backup_dir, host):
            _remove(path)
        work = names(backup_dir, host, stamp)["work"]
        work.mkdir(mode=0o700)
        started = time.monotonic()
        for component, source in sorted(sources.items()):
            if not Path(source).is_dir():
                raise BackupError(f"{component}'s data directory {source} does not exist on {host}")
            # cp keeps owners, modes, times and sparse files; reflink where the filesystem can.
            copy = subprocess.run(["cp", "-a", "--reflink=auto", "--", source, str(work / component)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
            if copy.returncode != 0:
                why = f"killed by signal {-copy.returncode}" if copy.returncode < 0 else copy.stderr.strip()[-500:]
                raise BackupError(f"copying {source} into {work} on {host} failed ({why}); the writers start again "
                                  f"and the next backup removes the partial copy")
        return {"seconds": round(time.monotonic() - started, 3), "bytes": tree_size(work),
                "removed_leftovers": removed}


def knowledge_bases(database: Path) -> List[Dict[str, Any]]:
    """The knowledge bases Chatchat's database lists (name, vector store, embedding model, files)."""
    if not database.is_file():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT kb_name, vs_type, embed_model, file_count FROM knowledge_base ORDER BY kb_name")
        return [{"name": n, "vector_store": v, "embed_model": e, "files": f} for n, v, e, f in rows]


class _HashingReader(io.RawIOBase):
    def __init__(self, handle: Any):
        self.handle, self.digest = handle, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.handle.read(len(buffer))
        self.digest.update(data)
        buffer[:len(data)] = data
        return len(data)


def archive(backup_dir: str, host: str, stamp: str, meta: Dict[str, Any], compresslevel: int) -> Dict[str, Any]:
    """Pack the working copy into the archive, write the manifest, remove the working copy."""
    paths = names(backup_dir, host, stamp)
    work = paths["work"]
    if not work.is_dir():
        raise BackupError(f"no working copy {work} to archive on {host}: the snapshot step did not run")
    started = time.monotonic()
    files: List[Dict[str, Any]] = []
    partial = Path(f"{paths['archive']}.partial")
    with _Lock(backup_dir):
        with tarfile.open(partial, "w:gz", compresslevel=compresslevel, format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(work.rglob("*")):
                name = path.relative_to(work).as_posix()
                info = tar.gettarinfo(str(path), arcname=name)
                if info is None:  # a socket: nothing to keep
                    continue
                if info.isreg():
                    with open(path, "rb") as handle:
                        reader = _HashingReader(handle)
                        tar.addfile(info, io.BufferedReader(reader, _CHUNK))
                    files.append({"path": name, "size": info.size, "sha256": reader.digest.hexdigest()})
                else:
                    tar.addfile(info)
            kbs = knowledge_bases(work / "chatchat" / "knowledge_base" / "info.db")
            manifest = {"format": FORMAT, "host": host, "stamp": stamp, **meta, "knowledge_bases": kbs,
                        "components": sorted(p.name for p in work.iterdir()), "files": files,
                        "bytes": sum(f["size"] for f in files)}
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MEMBER_MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(body))
        _fsync(partial)
        os.chmod(partial, 0o600)
        os.rename(partial, paths["archive"])
        manifest.update(archive=paths["archive"].name, archive_size=paths["archive"].stat().st_size,
                        archive_sha256=sha256_file(paths["archive"]))
        _write_atomic(paths["manifest"], json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        shutil.rmtree(work)
    return {"manifest": manifest, "archive": str(paths["archive"]), "manifest_path": str(paths["manifest"]),
            "seconds": round(time.monotonic() - started, 3)}


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _write_atomic(path: Path, text: str) -> None:
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    os.chmod(partial, 0o600)
    _fsync(partial)
    os.rename(partial, path)


def complete_backups(backup_dir: str, host: str) -> List[Path]:
    """This host's whole backups (those with a manifest), oldest first (the stamps sort by time)."""
    return _named(backup_dir, rf"{re.escape(host)}-{STAMP}{re.escape(MANIFEST_SUFFIX)}")


def prune(backup_dir: str, host: str, keep: int) -> List[str]:
    """Remove this host's oldest whole backups beyond `keep`."""
    removed = []
    for manifest in complete_backups(backup_dir, host)[:-keep] if keep > 0 else []:
        archive_path = manifest.with_name(manifest.name[:-len(MANIFEST_SUFFIX)] + ARCHIVE_SUFFIX)
        manifest.unlink()  # first: an archive without a manifest is never taken for a backup
        _unlink(archive_path)
        removed.append(str(archive_path))
    return removed


def find(backup_dir: str, host: str, which: str) -> Path:
    """The manifest of `which`: "latest", a time stamp, or a manifest or archive path."""
    if which == "latest":
        found = complete_backups(backup_dir, host)
        if not found:
            raise BackupError(f"no backup of {host} in {backup_dir} (restore_archive=latest); "
                              f"name an archive with restore_archive")
        return found[-1]
    if "/" in which:
        path = Path(which)
        if path.name.endswith(ARCHIVE_SUFFIX):
            path = path.with_name(path.name[:-len(ARCHIVE_SUFFIX)] + MANIFEST_SUFFIX)
    else:
        path = names(backup_dir, host, which)["manifest"]
    if not path.is_file():
        raise BackupError(f"restore_archive={which}: {path} does not exist on {host} (a backup without its "
                          f"manifest is incomplete)")
    return path


def verify(manifest_path: Path, expect: Dict[str, Any], targets: Dict[str, str]) -> Dict[str, Any]:
    """Everything a restore checks before it changes anything; BackupError names what is wrong."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{manifest_path} is not a readable backup manifest: {error}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{manifest_path} has format {manifest.get('format')!r}; this restore reads {FORMAT}")
    archive_path = manifest_path.with_name(manifest["archive"])
    if not archive_path.is_file():
        raise BackupError(f"{archive_path} is missing (its manifest is {manifest_path})")
    size = archive_path.stat().st_size
    digest = sha256_file(archive_path)
    if size != manifest["archive_size"] or digest != manifest["archive_sha256"]:
        raise BackupError(f"{archive_path} is corrupted: sha256 {digest} ({size} bytes), its manifest says "
                          f"{manifest['archive_sha256']} ({manifest['archive_size']} bytes). Nothing was restored")
    for key, want in sorted(expect.items()):
        if want not in (None, "") and manifest.get(key) != want:
            raise BackupError(f"{archive_path} holds {key} {manifest.get(key)!r} and this host runs {want!r}: "
                              f"a restore needs the same {key}. Deploy {key} {manifest.get(key)!r} first or "
                              f"choose a backup taken from {want!r}. Nothing was restored")
    missing = sorted(set(targets) - set(manifest["components"]))
    if missing:
        raise BackupError(f"{archive_path} holds {', '.join(manifest['components'])} but this host also needs "
                          f"{', '.join(missing)}. Nothing was restored")
    return manifest


def live(targets: Dict[str, str]) -> List[str]:
    """The target directories that hold data now."""
    return sorted(path for path in targets.values() if Path(path).is_dir() and any(Path(path).iterdir()))


def _staging(target: str, stamp: str) -> Path:
    return Path(f"{target.rstrip('/')}.restore-{stamp}")


def stage(manifest: Dict[str, Any], manifest_path: Path, targets: Dict[str, str]) -> Dict[str, Any]:
    """Extract each component beside its target, checking every file's size and sha256."""
    archive_path = manifest_path.with_name(manifest["archive"])
    expected = {f["path"]: f for f in manifest["files"]}
    stagings = {c: _staging(t, manifest["stamp"]) for c, t in targets.items()}
    started = time.monotonic()
    _remove_all(stagings.values())
    seen = set()
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            for info in tar:
                component, _, rest = info.name.partition("/")
                if info.name == MEMBER_MANIFEST or component not in stagings:
                    continue
                dest = stagings[component] / rest if rest else stagings[component]
                if info.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif info.issym():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(info.linkname, dest)
                elif info.isreg():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    with tar.extractfile(info) as source, open(dest, "wb") as out:
                        for chunk in iter(lambda: source.read(_CHUNK), b""):
                            digest.update(chunk)
                            out.write(chunk)
                    want = expected.get(info.name)
                    if want is None or want["sha256"] != digest.hexdigest() or want["size"] != info.size:
                        raise BackupError(f"{archive_path}: {info.name} does not match its manifest entry "
                                          f"(sha256 {digest.hexdigest()}). Nothing was restored")
                    seen.add(info.name)
                else:
                    continue
                os.lchown(dest, _uid(info), _gid(info))
                if not info.issym():
                    os.chmod(dest, info.mode)
                    os.utime(dest, (info.mtime, info.mtime))
        lost = sorted(name for name in expected if name.partition("/")[0] in stagings and name not in seen)
        if lost:
            raise BackupError(f"{archive_path} lacks {len(lost)} file(s) its manifest lists, first {lost[0]}. "
                              f"Nothing was restored")
    except BackupError:
        _remove_all(stagings.values())
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        _remove_all(stagings.values())
        raise BackupError(f"{archive_path} cannot be read: {error}. Nothing was restored") from None
    return {"staged": {c: str(p) for c, p in stagings.items()}, "seconds": round(time.monotonic() - started, 3)}


def _uid(info: tarfile.TarInfo) -> int:
    """The owner by name (a rebuilt host may give the service user another uid), else by number."""
    try:
        return pwd.getpwnam(info.uname).pw_uid if info.uname else info.uid
    except KeyError:
        return info.uid


def _gid(info: tarfile.TarInfo) -> int:
    try:
        return grp.getgrnam(info.gname).gr_gid if info.gname else info.gid
    except KeyError:
        return info.gid


def _remove_all(paths: Any) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            _remove(path)


def swap(manifest: Dict[str, Any], targets: Dict[str, str]) -> Dict[str, str]:
    """Put each staged component in place; the data it replaces is kept as <target>.pre-restore."""
    kept = {}
    for component, target in sorted(targets.items()):
        staged = _staging(target, manifest["stamp"])
        if not staged.is_dir():
            raise BackupError(f"{staged} is missing: run the restore again (nothing was swapped for {component})")
        previous = Path(f"{target.rstrip('/')}{PRE_RESTORE_SUFFIX}")
        if Path(target).exists():
            if previous.exists():
                _remove(previous)
            os.rename(target, previous)
            kept[component] = str(previous)
        os.rename(staged, target)
    return kept
