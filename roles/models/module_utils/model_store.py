# -*- coding: utf-8 -*-
"""The on-disk layout of the models role, shared by its modules.

    <store>/<name>/<revision>/                 a verified checkout (git metadata + the model files)
    <store>/<name>/<revision>.verified.json    its manifest: every file with its size and digest
    <store>/<name>/.staging-<revision>/        a pull in progress (kept across runs: resume)
    <root>/<name> -> <store>/<name>/<revision> the active revision (a symlink, switched atomically)

LFS files are verified against the sha256 in their pointer, other files against their git blob id,
so a truncated file, a pointer left in place of weights or a flipped byte is found without the mirror.
Written for Python 3.6+ (the interpreters of every supported target OS).
"""

import hashlib
import json
import os

LFS_POINTER_VERSION = b"version https://git-lfs.github.com/spec/v1"
# git-lfs never writes a pointer larger than this.
LFS_POINTER_MAX_BYTES = 1024
RECORD_SUFFIX = ".verified.json"
STAGING_PREFIX = ".staging-"
CHUNK = 4 * 1024 * 1024


def revision_dir(store, name, revision):
    return os.path.join(store, name, revision)


def record_path(store, name, revision):
    return revision_dir(store, name, revision) + RECORD_SUFFIX


def staging_dir(store, name, revision):
    return os.path.join(store, name, STAGING_PREFIX + revision)


def read_record(store, name, revision):
    """The manifest written when the revision was verified, or None."""
    try:
        with open(record_path(store, name, revision)) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def active_revision(dest, store, name):
    """The revision <dest> points at, when it is a link into this model's store; else None."""
    if not os.path.islink(dest):
        return None
    target = os.readlink(dest)
    if not os.path.isabs(target):
        target = os.path.join(os.path.dirname(dest), target)
    parent, revision = os.path.split(os.path.normpath(target))
    if os.path.normpath(parent) != os.path.normpath(os.path.join(store, name)):
        return None
    return revision


def is_present(dest, store, name, revision):
    """True when <dest> already points at a verified checkout of `revision` (no hashing)."""
    return (active_revision(dest, store, name) == revision
            and os.path.isdir(revision_dir(store, name, revision))
            and read_record(store, name, revision) is not None)


def parse_lfs_pointer(data):
    """(oid, size) of a Git LFS pointer file's content, or None when it is not one."""
    if len(data) > LFS_POINTER_MAX_BYTES or not data.startswith(LFS_POINTER_VERSION):
        return None
    oid = size = None
    for line in data.decode("ascii", "replace").splitlines()[1:]:
        key, _, value = line.partition(" ")
        if key == "oid" and value.startswith("sha256:"):
            oid = value[len("sha256:"):]
        elif key == "size" and value.isdigit():
            size = int(value)
    if oid is None or size is None or len(oid) != 64:
        return None
    return oid, size


def file_digest(path, algorithm, prefix=b""):
    digest = hashlib.new(algorithm)
    digest.update(prefix)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path, size, algorithm="sha1"):
    """The id git gives the file's content as a blob (what `git hash-object --no-filters` prints)."""
    return file_digest(path, algorithm, prefix=b"blob %d\0" % size)


def inode_key(path):
    """Identity of a file's content on this host: a hard link has the same key, a rewrite a new mtime."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns if hasattr(stat, "st_mtime_ns") else stat.st_mtime


def check_file(root, entry, full, hashed=None):
    """Why the file of a manifest entry is not good, or None when it is.

    `hashed` holds the inode_key of files whose sha256 this run already computed: not hashed twice.
    """
    path = os.path.join(root, entry["path"])
    if not os.path.isfile(path) or os.path.islink(path):
        return "missing"
    size = os.path.getsize(path)
    if size != entry["size"]:
        if entry["kind"] == "lfs" and size <= LFS_POINTER_MAX_BYTES:
            with open(path, "rb") as handle:
                if handle.read(len(LFS_POINTER_VERSION)) == LFS_POINTER_VERSION:
                    return "an LFS pointer instead of the content"
        return "size %d, expected %d" % (size, entry["size"])
    if not full or (hashed and entry["kind"] == "lfs" and hashed.get(inode_key(path)) == entry["digest"]):
        return None
    if entry["kind"] == "lfs":
        actual = file_digest(path, "sha256")
    else:
        actual = git_blob_id(path, size, "sha256" if len(entry["digest"]) == 64 else "sha1")
    if actual != entry["digest"]:
        return "content does not match its %s" % ("LFS pointer's sha256" if entry["kind"] == "lfs" else "git blob id")
    return None


def bad_files(root, files, full, hashed=None):
    """{path: reason} for every manifest entry whose file is not good."""
    problems = {}
    for entry in files:
        reason = check_file(root, entry, full, hashed)
        if reason:
            problems[entry["path"]] = reason
    return problems


def free_bytes(path):
    """Bytes available to an unprivileged writer on the filesystem that holds (or would hold) path."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize, probe
