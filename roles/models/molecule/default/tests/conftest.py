"""Fixtures of the models scenario: the lab's model repositories as the mirror holds them."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from testlib import MIRROR_URL

ROOT_PATH = "/opt/chatchat/models"
STORE = f"{ROOT_PATH}/.revisions"
CACHE, NODE = "models-cache", "models-node"
MODELS = {"tiny-gpt2": ("lab/tiny-gpt2", "llm"), "tiny-bert-embed": ("lab/tiny-bert-embed", "embedding")}


def repo_url(repo: str) -> str:
    return f"{MIRROR_URL}/repository/models/{repo}.git"


class Repo:
    """A metadata-only clone on the test host: what every file of a revision must be, from git alone."""

    def __init__(self, repo: str, workdir: Path):
        self.path = workdir / repo.replace("/", "_")
        env = dict(os.environ, GIT_LFS_SKIP_SMUDGE="1", GIT_TERMINAL_PROMPT="0")
        subprocess.run(["git", "clone", "-q", "--no-checkout", repo_url(repo), str(self.path)],
                       check=True, env=env, capture_output=True)

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True,
                              text=True).stdout

    def files(self, revision: str) -> dict[str, dict]:
        """{path: {"lfs": bool, "sha256" or "blob": digest, "size": n}} of a revision."""
        result = {}
        for line in self.git("ls-tree", "-r", "-l", revision).splitlines():
            meta, path = line.split("\t", 1)
            _mode, _kind, blob, size = meta.split()
            content = self.git("cat-file", "blob", blob) if int(size) < 1024 else ""
            if content.startswith("version https://git-lfs.github.com/spec/v1"):
                fields = dict(l.split(" ", 1) for l in content.splitlines()[1:] if " " in l)
                result[path] = {"lfs": True, "sha256": fields["oid"].removeprefix("sha256:"), "size": int(fields["size"])}
            else:
                result[path] = {"lfs": False, "blob": blob, "size": int(size)}
        return result


class Lab:
    """The lab's model repositories and the revisions molecule.yml pins."""

    def __init__(self, repos: dict[str, Repo], revisions: dict[str, dict[str, str]]):
        self.repos, self.revisions = repos, revisions

    def revision(self, name: str, tag: str = "v1") -> str:
        return self.revisions[name][tag]

    def files(self, name: str, tag: str = "v1") -> dict[str, dict]:
        return self.repos[name].files(self.revision(name, tag))

    def size(self, name: str, tag: str = "v1") -> int:
        return sum(f["size"] for f in self.files(name, tag).values())

    def extra(self, name: str, **overrides) -> dict:
        """A manifest entry for another copy of tiny-gpt2 v1 under `name` (tests clean up extra-*)."""
        entry = {"name": name, "repo": "lab/tiny-gpt2", "kind": "llm", "revision": self.revision("tiny-gpt2"),
                 "size": self.size("tiny-gpt2")}
        entry.update(overrides)
        return entry

    def manifest(self, tags: dict[str, str] | None = None, extra: list[dict] | tuple = ()) -> list[dict]:
        """The scenario's manifest, each model at tags.get(name, "v1"), plus extra entries."""
        tags = tags or {}
        return [{"name": name, "repo": repo, "kind": kind, "revision": self.revision(name, tags.get(name, "v1")),
                 "size": self.size(name, tags.get(name, "v1"))}
                for name, (repo, kind) in MODELS.items()] + list(extra)


@pytest.fixture(scope="session")
def lab():
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    host_vars = subprocess.run(["ansible-inventory", "-i", str(inventory), "--host", NODE], check=True,
                               capture_output=True, text=True).stdout
    pinned = json.loads(host_vars)["models_test_revisions"]
    with tempfile.TemporaryDirectory(prefix="models-ref-") as tmp:
        repos = {name: Repo(repo, Path(tmp)) for name, (repo, _kind) in MODELS.items()}
        for name, tags in pinned.items():
            for tag, sha in tags.items():
                # The lab generates its models reproducibly: its tags must still be the pinned commits.
                assert repos[name].git("rev-parse", f"refs/tags/{tag}^{{commit}}").strip() == sha, (name, tag)
        yield Lab(repos, pinned)
