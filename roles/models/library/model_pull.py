#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Pull one model repository at a pinned revision with git-lfs, verify it and make it active."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: model_pull
short_description: Place a verified checkout of a model repository's pinned revision at a path
description:
  - The git metadata is fetched first (a few KB for a model repository) and the revision's tree is
    checked against the expected size before any LFS object is downloaded.
  - LFS objects come, in this order, from another verified revision of the same model on the host
    (hard links), from a site cache (rsync), then from the mirror (missing objects only): straight from
    the URLs its LFS batch API returns, several at a time, each hashed while it is written and kept only
    when its size and sha256 match the pointer; an interrupted object resumes where it stopped (an HTTP
    range). What that path does not deliver is left to git lfs fetch.
    Every file is then checked against its LFS pointer's sha256 or its git blob id (not hashed twice);
    a bad one is fetched again.
  - The pull happens in <store>/<name>/.staging-<revision> (kept across runs, so an interrupted pull
    resumes without downloading finished objects again); only a verified checkout is renamed to
    <store>/<name>/<revision> and <dest> is then switched to it in one rename.
  - A converged model is verified from the disk only; the mirror is not contacted.
options:
  name: {description: Model name (the key of Chatchat's MODEL_PATH)., type: str, required: true}
  url: {description: Git URL of the model repository on the mirror., type: str, required: true}
  revision: {description: Commit to check out (40 hex digits)., type: str, required: true}
  dest: {description: Path of the link that points at the active revision., type: path, required: true}
  store: {description: Directory holding the revisions of every model., type: path, required: true}
  expected_size: {description: Expected size of the revision's files in bytes., type: int, required: true}
  size_tolerance_percent: {description: Allowed deviation from expected_size., type: float, default: 10}
  verify: {description: full (hash every file) or size (sizes and pointers only) on a converged model.,
           type: str, choices: [full, size], default: full}
  lfs_concurrent_transfers: {description: "Objects downloaded at a time (and git lfs fetch's lfs.concurrenttransfers); 0 takes
                             git's lfs.concurrenttransfers (8 when unset).", type: int, default: 0}
  cache_url: {description: rsync URL of a site cache holding <name>/<revision>/ trees; empty for none., type: str, default: ""}
  keep_revisions: {description: Verified revisions kept per model, the active one included., type: int, default: 2}
  fetch_attempts: {description: How often missing or bad objects are fetched before giving up., type: int, default: 3}
  timeout: {description: Seconds an HTTP request to the mirror may wait for data., type: int, default: 60}
  replace_unmanaged: {description: Move a directory found at dest aside instead of failing., type: bool, default: false}
"""

RETURN = r"""
revision_path: {description: The verified checkout dest points at., type: str}
outcome: {description: "none, pulled, repaired or switched.", type: str}
objects: {description: "LFS objects by source: local (hard links), cache, mirror.", type: dict}
repaired: {description: Files found bad and fetched again, with the reason., type: dict}
bytes: {description: Size of the revision's files., type: int}
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.http_client import HTTPException
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import unquote, urlsplit, urlunsplit
from ansible.module_utils.six.moves.urllib.request import Request, urlopen
from ansible.module_utils.model_store import (
    active_revision, bad_files, file_digest, inode_key, parse_lfs_pointer, read_record, record_path,
    revision_dir, staging_dir, CHUNK, LFS_POINTER_MAX_BYTES, RECORD_SUFFIX, STAGING_PREFIX,
)


CACHE_INBOX = "chatfleet-cache-inbox"
# Objects being downloaded straight from the mirror, named by oid: what a killed pull resumes.
DOWNLOAD_INBOX = "chatfleet-download"
LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
DEFAULT_TRANSFERS = 8  # git-lfs's own default of lfs.concurrenttransfers


class PullError(Exception):
    pass


def redact(url):
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname + (":%d" % parts.port if parts.port else "")
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


class ModelPull(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.name = self.p["name"]
        self.rev = self.p["revision"]
        self.store = self.p["store"]
        self.model_store = os.path.join(self.store, self.name)
        self.shown_url = redact(self.p["url"])
        self.objects = {"local": 0, "cache": 0, "mirror": 0}
        # inode_key -> sha256 of the objects this run hashed itself (not hashed again when verifying).
        self.hashed = {}
        self.env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1", LC_ALL="C")

    # ------------------------------------------------------------------ helpers
    def fail(self, msg):
        raise PullError("model %s (%s @ %s): %s" % (self.name, self.shown_url, self.rev[:12], msg))

    def git(self, repo, *args, **kwargs):
        argv = ["git", "-C", repo] + list(args)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                stdin=kwargs.get("stdin") and subprocess.PIPE)
        out, err = proc.communicate(kwargs.get("stdin"))
        if proc.returncode != 0 and kwargs.get("check", True):
            lines = err.decode("utf-8", "replace").replace(self.p["url"], self.shown_url).strip().splitlines()
            # git-lfs names the cause (not found, refused, ...) before its summary line: keep both.
            detail = " / ".join(line.strip() for line in lines[-3:]) or "rc=%d" % proc.returncode
            self.fail("%s failed: %s" % (kwargs.get("what", "git " + args[0]), detail[-600:]))
        return proc.returncode, out

    def object_path(self, repo, oid):
        return os.path.join(repo, ".git", "lfs", "objects", oid[0:2], oid[2:4], oid)

    def link_into(self, source, target):
        """Hard-link source at target, replacing target in one rename."""
        if os.path.isfile(target) and os.path.samefile(source, target):
            return  # already that file (rename() onto another link of the same inode does nothing)
        tmp = "%s.chatfleet-%d" % (target, os.getpid())
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.link(source, tmp)
        os.rename(tmp, target)

    # ------------------------------------------------------------------ manifest of a revision
    def tree_manifest(self, repo):
        """Every file of the revision: path, kind (lfs|git), digest and size, read from git alone."""
        _, out = self.git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", self.rev, what="reading the revision's tree")
        entries, small_blobs = [], {}
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, obj, size = meta.split()
            if kind != b"blob" or mode == b"120000":
                continue
            entry = {"path": path.decode("utf-8"), "kind": "git", "digest": obj.decode(), "size": int(size)}
            entries.append(entry)
            if entry["size"] <= LFS_POINTER_MAX_BYTES:
                small_blobs[entry["digest"]] = entry
        if small_blobs:
            _, data = self.git(repo, "cat-file", "--batch", stdin=("\n".join(small_blobs) + "\n").encode())
            pos = 0
            while pos < len(data):
                header_end = data.index(b"\n", pos)
                obj, _, size = data[pos:header_end].split(b" ")
                content = data[header_end + 1:header_end + 1 + int(size)]
                pos = header_end + 1 + int(size) + 1
                pointer = parse_lfs_pointer(content)
                if pointer:
                    for entry in entries:
                        if entry["digest"] == obj.decode() and entry["kind"] == "git":
                            entry.update(kind="lfs", digest=pointer[0], size=pointer[1])
        return sorted(entries, key=lambda e: e["path"])

    # ------------------------------------------------------------------ sources of LFS objects
    def seed_from_local(self, repo, wanted):
        """Hard-link objects other verified revisions of this model already hold."""
        if not os.path.isdir(self.model_store):
            return
        for entry_name in sorted(os.listdir(self.model_store)):
            if not entry_name.endswith(RECORD_SUFFIX):
                continue
            other = entry_name[:-len(RECORD_SUFFIX)]
            record = read_record(self.store, self.name, other)
            other_dir = revision_dir(self.store, self.name, other)
            if other == self.rev or not record:
                continue
            for entry in record["files"]:
                if entry["kind"] != "lfs" or entry["digest"] not in wanted:
                    continue
                source = os.path.join(other_dir, entry["path"])
                if (os.path.isfile(source) and os.path.getsize(source) == entry["size"]
                        and file_digest(source, "sha256") == entry["digest"]):
                    self.hashed[inode_key(source)] = entry["digest"]
                    self.store_object(repo, source, entry["digest"], link=True)
                    wanted.pop(entry["digest"])
                    self.objects["local"] += 1

    def store_object(self, repo, source, oid, link):
        target = self.object_path(repo, oid)
        if not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target))
        if link:
            self.link_into(source, target)
        else:
            os.rename(source, target)

    def seed_from_cache(self, repo, wanted):
        """Copy objects from the site cache's verified checkout of the same revision (rsync)."""
        if not self.p["cache_url"] or not wanted:
            return None
        # Kept until the pull is done, so rsync --partial resumes an interrupted copy.
        inbox = os.path.join(repo, ".git", CACHE_INBOX)
        if not os.path.isdir(inbox):
            os.makedirs(inbox)
        # Filter rules, not --files-from: an rsync daemon without chroot reports --files-from
        # entries as vanished. Names with rsync wildcard characters are left to the mirror.
        rules = ["--include=*/"]
        rules += ["--include=/" + path for path in sorted(set(e["path"] for e in wanted.values()))
                  if not any(char in path for char in "*?[\\")]
        source = "%s/%s/%s/" % (self.p["cache_url"].rstrip("/"), self.name, self.rev)
        proc = subprocess.Popen(["rsync", "-rt", "--partial", "--prune-empty-dirs"] + rules + ["--exclude=*", source, inbox + "/"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        _, err = proc.communicate()
        for oid, entry in list(wanted.items()):
            received = os.path.join(inbox, entry["path"])
            if os.path.isfile(received) and file_digest(received, "sha256") == oid:
                self.hashed[inode_key(received)] = oid
                self.store_object(repo, received, oid, link=False)
                wanted.pop(oid)
                self.objects["cache"] += 1
        if proc.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            return "model %s: the cache %s gave rc=%d (%s); the rest comes from the mirror" % (
                self.name, source, proc.returncode, lines[-1] if lines else "no message")
        return None

    def download_inbox(self, repo):
        return os.path.join(repo, ".git", "lfs", DOWNLOAD_INBOX)

    def lfs_endpoint(self, repo):
        """The LFS API URL git-lfs itself would use (lfs.url, .lfsconfig, or derived from the remote)."""
        _, out = self.git(repo, "lfs", "env", what="git lfs env")
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("Endpoint="):
                return line[len("Endpoint="):].split(" ")[0]
        return None

    def auth_header(self, url):
        """Basic credentials of the model URL, for requests to the same host (what git-lfs sends)."""
        model, other = urlsplit(self.p["url"]), urlsplit(url)
        if model.username is None or (model.hostname, model.port) != (other.hostname, other.port):
            return {}
        token = "%s:%s" % (unquote(model.username), unquote(model.password or ""))
        return {"Authorization": "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii")}

    def batch(self, endpoint, wanted):
        """{oid: (href, headers)} of the objects the LFS batch API offers for download."""
        body = json.dumps({"operation": "download", "transfers": ["basic"],
                           "objects": [{"oid": oid, "size": e["size"]} for oid, e in sorted(wanted.items())]})
        headers = {"Accept": LFS_MEDIA_TYPE, "Content-Type": LFS_MEDIA_TYPE}
        headers.update(self.auth_header(endpoint))
        response = urlopen(Request(endpoint.rstrip("/") + "/objects/batch", data=body.encode("utf-8"),
                                   headers=headers), timeout=self.p["timeout"])
        with response:
            answer = json.loads(response.read().decode("utf-8"))
        offers = {}
        for obj in answer.get("objects", []):
            action = (obj.get("actions") or {}).get("download")
            if obj.get("oid") in wanted and action and action.get("href") and not obj.get("error"):
                offers[obj["oid"]] = (action["href"], dict(action.get("header") or {}))
        return offers

    def download(self, repo, oid, size, href, headers):
        """One object into the inbox, hashed while written; moved into the object store when its size
        and sha256 match the pointer. A partial file from an interrupted pull is resumed."""
        partial = os.path.join(self.download_inbox(repo), oid)
        digest = hashlib.sha256()
        have = os.path.getsize(partial) if os.path.isfile(partial) else 0
        if have > size:
            os.unlink(partial)
            have = 0
        elif have:
            with open(partial, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(chunk)
        request_headers = dict(self.auth_header(href), **headers)
        if 0 < have < size:
            request_headers["Range"] = "bytes=%d-" % have
        if have < size:
            response = urlopen(Request(href, headers=request_headers), timeout=self.p["timeout"])
            with response:
                if have and response.getcode() != 206:  # the server sends the whole object again
                    digest, have = hashlib.sha256(), 0
                # read1 returns what has arrived (up to CHUNK), so a transfer cut off mid-chunk leaves
                # that much on disk for the next run to resume from (Python 3.7+; read() otherwise).
                read = getattr(response, "read1", response.read)
                with open(partial, "ab" if have else "wb") as handle:
                    for chunk in iter(lambda: read(CHUNK), b""):
                        digest.update(chunk)
                        handle.write(chunk)
                        have += len(chunk)
                        if have > size:
                            break
        if have < size:  # the transfer stopped early: kept, the next try resumes from here
            raise PullError("%d of %d bytes arrived" % (have, size))
        if have != size or digest.hexdigest() != oid:
            os.unlink(partial)
            raise PullError("%d bytes with sha256 %s, expected %d bytes with %s" % (have, digest.hexdigest(), size, oid))
        self.store_object(repo, partial, oid, link=False)
        self.hashed[inode_key(self.object_path(repo, oid))] = oid

    def download_from_mirror(self, repo, wanted):
        """Download what the batch API offers, several objects at a time; returns why an object (or the
        batch request) failed, {oid or "batch": reason}. What is delivered leaves `wanted`."""
        endpoint = self.lfs_endpoint(repo)
        if not endpoint:
            return {"batch": "git lfs env names no endpoint"}
        try:
            offers = self.batch(endpoint, wanted)
        except (HTTPError, URLError, HTTPException, OSError, ValueError) as error:
            return {"batch": str(error)}
        if not os.path.isdir(self.download_inbox(repo)):
            os.makedirs(self.download_inbox(repo))
        queue, failures, lock = sorted(offers, key=lambda oid: -wanted[oid]["size"]), {}, threading.Lock()

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    oid = queue.pop(0)
                try:
                    self.download(repo, oid, wanted[oid]["size"], *offers[oid])
                except (PullError, HTTPError, URLError, HTTPException, OSError, ValueError) as error:
                    with lock:
                        failures[oid] = str(error)

        transfers = self.p["lfs_concurrent_transfers"]
        if not transfers:
            _, configured = self.git(repo, "config", "--get", "lfs.concurrenttransfers", check=False)
            transfers = int(configured) if configured.strip().isdigit() else DEFAULT_TRANSFERS
        threads = [threading.Thread(target=worker) for _ in range(min(len(queue), transfers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for oid in offers:
            if oid not in failures:
                wanted.pop(oid)
                self.objects["mirror"] += 1
        return failures

    def fetch_from_mirror(self, repo, wanted):
        if not wanted:
            return
        failures = self.download_from_mirror(repo, wanted)
        if not wanted:
            return
        if failures:
            self.module.warn("model %s: the mirror's LFS objects did not all arrive directly (%s); git lfs fetch "
                             "gets the other %d" % (self.name, "; ".join("%s: %s" % (k[:12], v[:200])
                                                                         for k, v in sorted(failures.items())),
                                                     len(wanted)))
        args = []
        if self.p["lfs_concurrent_transfers"]:
            args = ["-c", "lfs.concurrenttransfers=%d" % self.p["lfs_concurrent_transfers"]]
        include = ",".join(sorted(set(entry["path"] for entry in wanted.values())))
        self.git(repo, *(args + ["lfs", "fetch", "--include=" + include, "--exclude=", "origin", self.rev]),
                 what="git lfs fetch")
        for oid in list(wanted):
            if os.path.isfile(self.object_path(repo, oid)):
                wanted.pop(oid)
                self.objects["mirror"] += 1
        if wanted:
            self.fail("the mirror did not deliver the LFS objects of %s" % ", ".join(sorted(e["path"] for e in wanted.values())))

    def ensure_objects(self, repo, entries):
        """Put the LFS objects of `entries` into repo's object store, from the cheapest source."""
        wanted = {}
        for entry in entries:
            if entry["kind"] == "lfs" and not os.path.isfile(self.object_path(repo, entry["digest"])):
                wanted[entry["digest"]] = entry
        self.seed_from_local(repo, wanted)
        warning = self.seed_from_cache(repo, wanted)
        if warning:
            self.module.warn(warning)
        self.fetch_from_mirror(repo, wanted)

    def place(self, repo, entries):
        """Replace files with their content: LFS objects hard-linked, git blobs checked out."""
        git_paths = []
        for entry in entries:
            if entry["kind"] == "lfs":
                self.link_into(self.object_path(repo, entry["digest"]), os.path.join(repo, entry["path"]))
            else:
                git_paths.append(entry["path"])
        if git_paths:
            self.git(repo, "checkout", "--force", self.rev, "--", *git_paths)

    def settle(self, repo, files):
        """Fetch, place and verify until every file is good; returns {path: reason} of what was bad."""
        repaired = {}
        for attempt in range(self.p["fetch_attempts"]):
            problems = bad_files(repo, files, full=True, hashed=self.hashed)
            if not problems:
                return repaired
            repaired.update(problems)
            bad = [e for e in files if e["path"] in problems]
            for entry in bad:
                if entry["kind"] == "lfs":
                    obj = self.object_path(repo, entry["digest"])
                    # An object in the store that does not hash right is dropped and fetched again.
                    if os.path.isfile(obj) and file_digest(obj, "sha256") != entry["digest"]:
                        self.hashed.pop(inode_key(obj), None)
                        os.unlink(obj)
                    target = os.path.join(repo, entry["path"])
                    if os.path.lexists(target) and os.path.isfile(obj):
                        continue
                    if os.path.lexists(target):
                        os.unlink(target)
            self.ensure_objects(repo, bad)
            self.place(repo, bad)
        problems = bad_files(repo, files, full=True)
        if problems:
            self.fail("files still bad after %d attempts: %s" % (self.p["fetch_attempts"], json.dumps(problems, sort_keys=True)))
        return repaired

    def prune_object_store(self, repo):
        """The checkout holds every object as a hard link: the store's names are no longer needed."""
        for sub in ("lfs/objects", "lfs/tmp", "lfs/incomplete", "lfs/" + DOWNLOAD_INBOX, CACHE_INBOX):
            shutil.rmtree(os.path.join(repo, ".git", sub), ignore_errors=True)

    # ------------------------------------------------------------------ the steps
    def clone_metadata(self, staging):
        if not os.path.isdir(os.path.join(staging, ".git")):
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
            self.git(staging, "init", "-q")
            self.git(staging, "remote", "add", "origin", self.p["url"])
        else:
            self.git(staging, "remote", "set-url", "origin", self.p["url"])
        rc, _ = self.git(staging, "cat-file", "-e", self.rev + "^{commit}", check=False)
        if rc != 0:
            self.git(staging, "fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*",
                     what="fetching the repository")
            rc, _ = self.git(staging, "cat-file", "-e", self.rev + "^{commit}", check=False)
            if rc != 0:
                _, refs = self.git(staging, "for-each-ref", "--format=%(refname:short) %(objectname:short)")
                self.fail("revision %s is not in the repository (its branches and tags: %s)"
                          % (self.rev, ", ".join(refs.decode().split("\n")[:10]).strip(", ") or "none"))

    def check_size(self, files):
        actual = sum(entry["size"] for entry in files)
        expected = self.p["expected_size"]
        if abs(actual - expected) > expected * self.p["size_tolerance_percent"] / 100.0:
            self.fail("the revision holds %d bytes but the manifest says %d (tolerance %g%%): fix the manifest's "
                      "size (or revision) before anything is downloaded"
                      % (actual, expected, self.p["size_tolerance_percent"]))
        return actual

    def pull(self):
        staging = staging_dir(self.store, self.name, self.rev)
        final = revision_dir(self.store, self.name, self.rev)
        if os.path.isdir(final):
            # A checkout with no record was cut short after its rename: verify it again as staging.
            if os.path.isdir(staging):
                shutil.rmtree(final)
            else:
                os.rename(final, staging)
        self.clone_metadata(staging)
        files = self.tree_manifest(staging)
        size = self.check_size(files)
        self.git(staging, "checkout", "-q", "--force", "--detach", self.rev)
        self.git(staging, "clean", "-q", "-ffdx")
        self.ensure_objects(staging, files)
        self.place(staging, [e for e in files if e["kind"] == "lfs"])
        self.settle(staging, files)
        self.prune_object_store(staging)
        os.rename(staging, final)
        self.write_record(files, size)
        return size

    def write_record(self, files, size):
        record = {"name": self.name, "url": self.shown_url, "revision": self.rev, "bytes": size,
                  "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
        path = record_path(self.store, self.name, self.rev)
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(path + ".tmp", path)

    def switch(self, dest, target):
        tmp = "%s.chatfleet-new" % dest
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, dest)

    def prune_revisions(self, active):
        """Keep the active revision and the newest others up to keep_revisions; staging of others goes."""
        verified = []
        for entry in os.listdir(self.model_store):
            path = os.path.join(self.model_store, entry)
            if entry.startswith(STAGING_PREFIX) and entry != STAGING_PREFIX + active:
                shutil.rmtree(path, ignore_errors=True)
            elif entry.endswith(RECORD_SUFFIX) and entry[:-len(RECORD_SUFFIX)] != active:
                verified.append((os.path.getmtime(path), entry[:-len(RECORD_SUFFIX)]))
        for _, revision in sorted(verified, reverse=True)[max(self.p["keep_revisions"] - 1, 0):]:
            os.unlink(record_path(self.store, self.name, revision))
            shutil.rmtree(revision_dir(self.store, self.name, revision), ignore_errors=True)

    # ------------------------------------------------------------------ entry point
    def run(self):
        dest = self.p["dest"]
        final = revision_dir(self.store, self.name, self.rev)
        record = read_record(self.store, self.name, self.rev)
        result = {"revision_path": final, "objects": self.objects, "repaired": {}}
        if os.path.lexists(dest) and not os.path.islink(dest):
            if not self.p["replace_unmanaged"]:
                self.fail("%s exists and is not managed by chatfleet (a manual clone?): move it away, or set "
                          "models_replace_unmanaged to keep it as %s/unmanaged-<time> and replace it"
                          % (dest, self.model_store))
        if record and os.path.isdir(final):
            problems = bad_files(final, record["files"], full=self.p["verify"] == "full")
            active = active_revision(dest, self.store, self.name) == self.rev
            if not problems and active:
                result.update(changed=False, outcome="none", bytes=record["bytes"])
                return result
            if self.module.check_mode:
                result.update(changed=True, outcome="repaired" if problems else "switched", repaired=problems,
                              bytes=record["bytes"])
                return result
            if problems:
                self.git(final, "remote", "set-url", "origin", self.p["url"])
                result["repaired"] = self.settle(final, record["files"])
            self.prune_object_store(final)
            result.update(outcome="repaired" if problems else "switched", bytes=record["bytes"])
        else:
            if self.module.check_mode:
                result.update(changed=True, outcome="pulled", bytes=self.p["expected_size"])
                return result
            if not os.path.isdir(self.model_store):
                os.makedirs(self.model_store)
            result.update(outcome="pulled", bytes=self.pull())
        if os.path.lexists(dest) and not os.path.islink(dest):
            os.rename(dest, os.path.join(self.model_store, "unmanaged-%d" % int(time.time())))
        if not os.path.isdir(os.path.dirname(dest)):
            os.makedirs(os.path.dirname(dest))
        if active_revision(dest, self.store, self.name) != self.rev:
            self.switch(dest, final)
        self.prune_revisions(self.rev)
        result["changed"] = True
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            url=dict(type="str", required=True),
            revision=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            store=dict(type="path", required=True),
            expected_size=dict(type="int", required=True),
            size_tolerance_percent=dict(type="float", default=10),
            verify=dict(type="str", choices=["full", "size"], default="full"),
            lfs_concurrent_transfers=dict(type="int", default=0),
            cache_url=dict(type="str", default=""),
            keep_revisions=dict(type="int", default=2),
            fetch_attempts=dict(type="int", default=3),
            timeout=dict(type="int", default=60),
            replace_unmanaged=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    os.umask(0o022)
    puller = ModelPull(module)
    try:
        result = puller.run()
    except PullError as error:
        module.fail_json(msg=str(error), objects=puller.objects)
    except (OSError, IOError) as error:
        module.fail_json(msg="model %s: %s" % (module.params["name"], error), objects=puller.objects)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
