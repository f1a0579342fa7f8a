"""Tests of the lab mirror (lab/mirror.py) against a running instance.

The session fixture runs `lab/mirror.py up` (cached: about a second when the mirror is already
built and running). Run with `.venv/bin/pytest -q tests/lab`.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
MIRROR = ROOT / "lab" / "mirror.py"
BASE = f"http://127.0.0.1:{os.environ.get('LAB_MIRROR_PORT', '18080')}"
PYPI_INDEX = f"{BASE}/repository/pypi-proxy/simple/"
RAW = f"{BASE}/repository/raw-hosted/"
APT = f"{BASE}/repository/apt-debian/"
MODEL_REPO = f"{BASE}/repository/models/lab/tiny-gpt2.git"
BASE_IMAGE = os.environ.get("LAB_BASE_IMAGE", "chatfleet/debian-systemd:bookworm")


def read_list(name: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "lab" / "mirror" / name).read_text().splitlines())
    return [line for line in lines if line]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def status_of(url: str, method: str = "GET", data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, data=data), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="session", autouse=True)
def mirror_up() -> None:
    subprocess.run([sys.executable, str(MIRROR), "up"], check=True)


@pytest.fixture()
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no pip configuration and an empty HOME (no git/git-lfs config)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    return env


def test_status_reports_every_endpoint_up() -> None:
    out = subprocess.run([sys.executable, str(MIRROR), "status"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    for endpoint in ("pypi-proxy", "raw-hosted", "apt-debian", "models (git)", "models (lfs)",
                     "models hf (git)", "models hf (lfs)"):
        assert any(line.startswith(endpoint) and line.endswith(" up") for line in out.stdout.splitlines())


def test_pypi_index_lists_every_requirement() -> None:
    index = fetch(PYPI_INDEX).decode().lower()
    for req in read_list("pypi-lock.txt"):
        name = req.split("==")[0]
        assert f">{name.lower().replace('_', '-')}<" in index.replace("_", "-")


def test_pip_installs_from_the_pypi_endpoint_only(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "--index-url", PYPI_INDEX, "requests"],
                         env=isolated_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # Every file came through the front door, from the pypi-proxy prefix.
    downloads = [line for line in out.stdout.splitlines() if "Downloading" in line]
    assert downloads
    assert all(f"{BASE}/repository/pypi-proxy/packages/" in line for line in downloads)
    subprocess.run([str(venv / "bin" / "python"), "-c", "import requests"], check=True)


def served_versions() -> dict[str, set]:
    """{project: {versions}} of every file the PyPI endpoint serves."""
    listing = fetch(f"{BASE}/repository/pypi-proxy/packages/").decode()
    versions: dict[str, set] = {}
    for name in re.findall(r">([^<>]+\.(?:whl|tar\.gz|zip))</a>", listing):
        project, version = parse_wheel_filename(name)[:2] if name.endswith(".whl") else parse_sdist_filename(name)
        versions.setdefault(canonicalize_name(project), set()).add(version)
    return versions


def test_pypi_serves_torch_as_the_cpu_build_without_cuda_packages() -> None:
    """torch==2.13.0 resolves to the build machine's CPU wheel; PyPI's build would bring nvidia-* and triton."""
    versions = served_versions()
    assert sorted(map(str, versions["torch"])) == ["2.13.0+cpu"]
    assert sorted(p for p in versions if p.startswith("nvidia-") or p.endswith("triton")) == []


def test_pypi_serves_exactly_the_lock() -> None:
    """The served set is pypi-lock.txt, file for file: what the lab nodes install resolves against it."""
    versions = served_versions()
    locked = {canonicalize_name(name): version for name, version in (pin.split("==") for pin in read_list("pypi-lock.txt"))}
    assert {name: sorted(map(str, v)) for name, v in versions.items()} == {name: [v] for name, v in locked.items()}


def test_the_lock_is_the_resolution_of_its_inputs() -> None:
    """pypi-lock.txt records the fingerprint of what it resolved (the release's requirements.txt with the
    lab inventory's python_env edits, pins and constraints, pypi-packages.txt): a changed input without a
    new `lab/mirror.py lock` fails here."""
    sys.path.insert(0, str(ROOT / "lab"))
    import mirror
    assert f"# inputs: {mirror.lock_fingerprint()}" in (ROOT / "lab" / "mirror" / "pypi-lock.txt").read_text()


def test_the_lab_nodes_requirement_set_is_v028s_with_the_lab_edits() -> None:
    sys.path.insert(0, str(ROOT / "lab"))
    import mirror
    requirements, constraints = mirror.lab_node_requirements()
    names = {canonicalize_name(Requirement(line).name): line for line in requirements}
    assert not {"vllm", "xformers", "torchvision", "torchaudio"} & set(names)
    assert names["torch"] == "torch==2.13.0"
    assert names["unstructured"].startswith("unstructured[csv,") and "pdf" not in names["unstructured"]
    assert "python-multipart" in names and "langchain-experimental" in names
    assert {"httpx<0.28", "nltk<3.9", "PyMuPDF<1.25", "transformers<4.46"} <= set(constraints)


def test_raw_files_match_sha256sums() -> None:
    sums = fetch(RAW + "SHA256SUMS").decode().splitlines()
    names = [line.split(None, 1)[1] for line in sums]
    assert "lab/hello-1.0.0.tar.gz" in names
    for line in sums:
        digest, name = line.split(None, 1)
        assert hashlib.sha256(fetch(RAW + name)).hexdigest() == digest, name
        # The per-file checksum (what ansible.builtin.get_url's checksum: can point at).
        assert fetch(RAW + name + ".sha256").decode().split()[0] == digest, name
    with tarfile.open(fileobj=io.BytesIO(fetch(RAW + "lab/hello-1.0.0.tar.gz"))) as tar:
        assert "hello-1.0.0/bin/hello" in tar.getnames()


def test_apt_repository_lists_the_packages_with_their_files() -> None:
    release = fetch(APT + "dists/bookworm/Release").decode()
    assert "Suite: bookworm" in release and "Components: main" in release
    packages_gz = fetch(APT + "dists/bookworm/main/binary-amd64/Packages.gz")
    assert hashlib.sha256(packages_gz).hexdigest() in release
    stanzas = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(" "))
               for block in gzip.decompress(packages_gz).decode().split("\n\n") if block.strip()]
    names = {s["Package"] for s in stanzas}
    assert {"git", "git-lfs"} <= names
    assert set(read_list("apt-packages.txt")) <= names
    git_lfs = next(s for s in stanzas if s["Package"] == "git-lfs")
    deb = fetch(APT + git_lfs["Filename"])
    assert len(deb) == int(git_lfs["Size"])
    assert hashlib.sha256(deb).hexdigest() == git_lfs["SHA256"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs docker and the lab base image")
def test_apt_installs_git_lfs_with_only_the_mirror_as_source() -> None:
    script = (
        "set -e; rm -f /etc/apt/sources.list; rm -rf /etc/apt/sources.list.d/* /var/lib/apt/lists/*;"
        f" echo 'deb [trusted=yes] {APT} bookworm main' > /etc/apt/sources.list.d/lab.list;"
        " apt-get -q update >/dev/null;"
        " DEBIAN_FRONTEND=noninteractive apt-get install -y -q git git-lfs >/dev/null;"
        " git lfs version"
    )
    out = subprocess.run(["docker", "run", "--rm", "--network", "host", "--label", "chatfleet.lab=mirror-test",
                          "--entrypoint", "/bin/sh", BASE_IMAGE, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("git-lfs/")


# --------------------------------------------------------------------------- model repositories

# The commits lab/mirror.py publishes (lab/models/generate.py). Pinned here, independently of the
# generator: a generator whose output is not reproducible, or that changed without these pins (and
# the inventories that pin the same commits) being updated, fails.
MODEL_PINS = {
    "lab/tiny-gpt2": {"v1": "3969cf7487791534cf045c66f2d5a704f8ca56c4",
                      "v2": "cb23d61ae0a142f3a6cfdd62041153dfbadb4aae"},
    "lab/tiny-bert-embed": {"v1": "5a70be16bbef6a43f220152e21179ec512e3e5b2",
                            "v2": "76c6dbcc533dbadac343b6c53f5bc6bf1281d85f"},
}
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\n"


def model_url(repo: str, layout: str) -> str:
    """The two layouts of the same repository: Nexus-style with .git, Hugging Face-mirror-style without."""
    return f"{BASE}/repository/models/{repo}.git" if layout == "nexus" else f"{BASE}/hf/{repo}"


def git_in(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout


def clone(url: str, dest: Path, env: dict[str, str]) -> Path:
    git_in(env, dest.parent, "lfs", "install")
    git_in(env, dest.parent, "clone", "-q", url, dest.name)
    return dest


def lfs_files(clone_dir: Path, env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """{path: (sha256, size)} of the checked-out revision, from the pointers git stores."""
    files = {}
    for path in git_in(env, clone_dir, "ls-files").splitlines():
        blob = subprocess.run(["git", "cat-file", "-p", f"HEAD:{path}"], cwd=clone_dir, env=env,
                              capture_output=True, check=True).stdout
        if blob.startswith(LFS_POINTER):
            fields = dict(line.split(" ", 1) for line in blob.decode().splitlines())
            files[path] = (fields["oid"].removeprefix("sha256:"), int(fields["size"]))
    return files


def read_safetensors(path: Path) -> dict[str, dict]:
    """The header of a .safetensors file, checked against the file: F32 tensors whose sizes match
    their shapes and that tile the data section exactly."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    spans = []
    for name, tensor in header.items():
        assert tensor["dtype"] == "F32", name
        begin, end = tensor["data_offsets"]
        assert end - begin == 4 * math.prod(tensor["shape"]), name
        spans.append((begin, end))
    spans.sort()
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == len(data) - 8 - length
    return header


def check_gpt2(clone_dir: Path) -> None:
    config = json.loads((clone_dir / "config.json").read_text())
    vocab = json.loads((clone_dir / "vocab.json").read_text())
    tokenizer = json.loads((clone_dir / "tokenizer.json").read_text())
    merges = (clone_dir / "merges.txt").read_text().splitlines()
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["model_type"] == "gpt2"
    assert config["n_positions"] >= 4096, "FastChat's chat template needs ~2,100 tokens"
    # Tokenizer size == vocab_size, the slow (vocab.json + merges.txt) and fast (tokenizer.json) forms agree.
    assert config["vocab_size"] == len(vocab) == len(set(vocab.values())) == max(vocab.values()) + 1
    assert tokenizer["model"]["vocab"] == vocab
    assert merges[0].startswith("#version") and tokenizer["model"]["merges"] == merges[1:]
    assert len(merges) - 1 >= 200
    assert all(a + b in vocab and a in vocab and b in vocab for a, b in (m.split(" ") for m in merges[1:]))
    eos = vocab["<|endoftext|>"]
    assert config["bos_token_id"] == config["eos_token_id"] == eos
    assert [t["id"] for t in tokenizer["added_tokens"] if t["content"] == "<|endoftext|>"] == [eos]
    assert json.loads((clone_dir / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"
    generation = json.loads((clone_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == eos
    e, n_layer, positions = config["n_embd"], config["n_layer"], config["n_positions"]
    expected = {"wte.weight": [len(vocab), e], "wpe.weight": [positions, e],
                "ln_f.weight": [e], "ln_f.bias": [e]}
    for i in range(n_layer):
        expected.update({
            f"h.{i}.ln_1.weight": [e], f"h.{i}.ln_1.bias": [e],
            f"h.{i}.attn.c_attn.weight": [e, 3 * e], f"h.{i}.attn.c_attn.bias": [3 * e],
            f"h.{i}.attn.c_proj.weight": [e, e], f"h.{i}.attn.c_proj.bias": [e],
            f"h.{i}.ln_2.weight": [e], f"h.{i}.ln_2.bias": [e],
            f"h.{i}.mlp.c_fc.weight": [e, 4 * e], f"h.{i}.mlp.c_fc.bias": [4 * e],
            f"h.{i}.mlp.c_proj.weight": [4 * e, e], f"h.{i}.mlp.c_proj.bias": [e],
        })
    header = read_safetensors(clone_dir / "model.safetensors")
    assert {name: t["shape"] for name, t in header.items()} == expected
    assert 3 << 20 <= (clone_dir / "model.safetensors").stat().st_size <= 6 << 20


def check_bert(clone_dir: Path) -> None:
    config = json.loads((clone_dir / "config.json").read_text())
    vocab = (clone_dir / "vocab.txt").read_text().splitlines()
    tokenizer = json.loads((clone_dir / "tokenizer.json").read_text())
    assert config["architectures"] == ["BertModel"] and config["model_type"] == "bert"
    assert config["vocab_size"] == len(vocab) == len(set(vocab))
    assert tokenizer["model"]["vocab"] == {token: i for i, token in enumerate(vocab)}
    assert {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} <= set(vocab)
    assert vocab.index("[PAD]") == config["pad_token_id"]
    assert any("\u4e00" <= token <= "\u9fff" for token in vocab), "no CJK characters in the vocab"
    h, inter, n_layer = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    expected = {
        "embeddings.word_embeddings.weight": [len(vocab), h],
        "embeddings.position_embeddings.weight": [config["max_position_embeddings"], h],
        "embeddings.token_type_embeddings.weight": [config["type_vocab_size"], h],
        "embeddings.LayerNorm.weight": [h], "embeddings.LayerNorm.bias": [h],
        "pooler.dense.weight": [h, h], "pooler.dense.bias": [h],
    }
    for i in range(n_layer):
        layer = f"encoder.layer.{i}"
        for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            expected.update({f"{layer}.{part}.weight": [h, h], f"{layer}.{part}.bias": [h]})
        expected.update({
            f"{layer}.attention.output.LayerNorm.weight": [h], f"{layer}.attention.output.LayerNorm.bias": [h],
            f"{layer}.intermediate.dense.weight": [inter, h], f"{layer}.intermediate.dense.bias": [inter],
            f"{layer}.output.dense.weight": [h, inter], f"{layer}.output.dense.bias": [h],
            f"{layer}.output.LayerNorm.weight": [h], f"{layer}.output.LayerNorm.bias": [h],
        })
    header = read_safetensors(clone_dir / "model.safetensors")
    assert {name: t["shape"] for name, t in header.items()} == expected
    assert 1 << 20 <= (clone_dir / "model.safetensors").stat().st_size <= 3 << 20
    # sentence-transformers: Transformer -> Pooling (its dimension is the hidden size) -> Normalize.
    modules = json.loads((clone_dir / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((clone_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == h
    assert json.loads((clone_dir / "config_sentence_transformers.json").read_text())["__version__"]


CHECKS = {"lab/tiny-gpt2": check_gpt2, "lab/tiny-bert-embed": check_bert}


@pytest.mark.parametrize("layout", ["nexus", "hf"])
@pytest.mark.parametrize("repo", sorted(MODEL_PINS))
def test_model_revisions_clone_with_real_lfs_content(repo: str, layout: str, tmp_path: Path,
                                                      isolated_env: dict[str, str]) -> None:
    """Both revisions of each model, through each layout: pinned commits and tags, real content whose
    sha256 matches every pointer, weights and tokenizer in LFS and the rest in git, consistent files."""
    repo_dir = clone(model_url(repo, layout), tmp_path / repo.split("/")[1], isolated_env)
    tags = dict(line.split()[::-1] for line in git_in(isolated_env, repo_dir, "show-ref", "--tags").splitlines())
    assert {tag.removeprefix("refs/tags/"): sha for tag, sha in tags.items()} == MODEL_PINS[repo]
    assert git_in(isolated_env, repo_dir, "rev-parse", "HEAD").strip() == MODEL_PINS[repo]["v2"]
    assert git_in(isolated_env, repo_dir, "rev-list", "--count", "HEAD").strip() == "2"
    assert git_in(isolated_env, repo_dir, "rev-parse", "HEAD~1").strip() == MODEL_PINS[repo]["v1"]
    contents = {}
    for tag in ("v1", "v2"):
        git_in(isolated_env, repo_dir, "checkout", "-q", tag)
        pointers = lfs_files(repo_dir, isolated_env)
        assert set(pointers) == {"model.safetensors", "tokenizer.json"}, "LFS holds exactly the weights and tokenizer"
        for path, (oid, size) in pointers.items():
            data = (repo_dir / path).read_bytes()
            assert not data.startswith(LFS_POINTER), f"{tag}:{path} is a pointer, not the object"
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (oid, size), f"{tag}:{path}"
        assert "Git LFS fsck OK" in git_in(isolated_env, repo_dir, "lfs", "fsck")
        readme = (repo_dir / "README.md").read_text()
        assert "random" in readme.lower() and "lab-generated" in readme
        CHECKS[repo](repo_dir)
        contents[tag] = {p: (repo_dir / p).read_bytes() for p in git_in(isolated_env, repo_dir, "ls-files").split()}
    changed = sorted(p for p in contents["v2"] if contents["v1"].get(p) != contents["v2"][p])
    small = [p for p in changed if p != "model.safetensors"]
    assert "model.safetensors" in changed and len(small) == 1, changed
    assert set(contents["v1"]) == set(contents["v2"])


def models_json() -> dict[str, dict]:
    out = subprocess.run([sys.executable, str(MIRROR), "models", "--json"], capture_output=True, text=True,
                         check=True)
    return {repo["repo"]: repo for repo in json.loads(out.stdout)}


def test_hf_layout_serves_the_same_repository_read_only() -> None:
    """/hf/<org>/<name> is the same bare repository as /repository/models/<org>/<name>.git, and its
    LFS endpoint (<url>.git/info/lfs, as git-lfs derives it) hands out the same objects but refuses uploads."""
    for repo in MODEL_PINS:
        assert fetch(f"{model_url(repo, 'hf')}/info/refs") == fetch(f"{model_url(repo, 'nexus')}/info/refs")
    weights = next(f for f in models_json()["lab/tiny-gpt2"]["revisions"]["v2"]["files"]
                   if f["path"] == "model.safetensors")
    body = json.dumps({"operation": "download", "transfers": ["basic"],
                       "objects": [{"oid": weights["sha256"], "size": weights["size"]}]}).encode()
    hf = model_url("lab/tiny-gpt2", "hf")
    req = urllib.request.Request(f"{hf}.git/info/lfs/objects/batch", data=body, headers={
        "Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    href = answer["objects"][0]["actions"]["download"]["href"]
    assert href.startswith(BASE + "/")
    assert hashlib.sha256(fetch(href)).hexdigest() == weights["sha256"]
    assert status_of(f"{hf}.git/info/lfs/objects/storage/{weights['sha256']}", method="PUT", data=b"x") == 403
    assert status_of(f"{BASE}/hf/lab/no-such-model/info/refs") == 404


def test_models_subcommand_reports_the_pins_and_sizes(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    summary = models_json()
    for repo, pins in MODEL_PINS.items():
        assert {tag: rev["commit"] for tag, rev in summary[repo]["revisions"].items()} == pins
        assert summary[repo]["urls"] == {"nexus": model_url(repo, "nexus"), "hf": model_url(repo, "hf")}
    # The reported size of a revision is the size of its checked-out files (LFS objects in full).
    repo_dir = clone(model_url("lab/tiny-gpt2", "nexus"), tmp_path / "tiny-gpt2", isolated_env)
    for tag in ("v1", "v2"):
        git_in(isolated_env, repo_dir, "checkout", "-q", tag)
        on_disk = sum((repo_dir / p).stat().st_size for p in git_in(isolated_env, repo_dir, "ls-files").split())
        assert summary["lab/tiny-gpt2"]["revisions"][tag]["bytes"] == on_disk


def test_bench_model_publisher(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    """`bench-model --size-mb 1`: a repository with 4 LFS files of 256 KiB and the same bytes as
    plain downloads (with .sha256 files), which a later `build` leaves in place."""
    subprocess.run([sys.executable, str(MIRROR), "bench-model", "--size-mb", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, str(MIRROR), "build"], check=True, stdout=subprocess.DEVNULL)
    repo_dir = clone(model_url("bench/bulk-1m", "hf"), tmp_path / "bulk-1m", isolated_env)
    pointers = lfs_files(repo_dir, isolated_env)
    assert len(pointers) == 4 and {size for _, size in pointers.values()} == {256 * 1024}
    assert json.loads((repo_dir / "config.json").read_text())["size_mb"] == 1
    plain = f"{RAW}bench/bulk-1m/"
    sums = dict(line.split()[::-1] for line in fetch(plain + "SHA256SUMS").decode().splitlines())
    for path, (oid, _) in pointers.items():
        data = fetch(plain + path)
        assert hashlib.sha256(data).hexdigest() == oid == sums[path]
        assert (repo_dir / path).read_bytes() == data
        assert fetch(plain + path + ".sha256").decode().split()[0] == oid


def test_lfs_uploads_are_refused_through_the_front_door() -> None:
    oid = "0" * 64
    url = f"{MODEL_REPO}/info/lfs/objects/storage/{oid}"
    assert status_of(url, method="PUT", data=b"x") == 403


def test_conda_proxy_is_documented_as_absent() -> None:
    assert status_of(f"{BASE}/repository/conda-proxy/") == 404


# The release and the test doubles the mirror publishes, and the SHA-256 pins that point at them:
# a file changed without updating its pin fails here, before any molecule run.
def _pinned(path: str, key: str) -> str:
    for line in (ROOT / path).read_text().splitlines():
        if line.strip().startswith(f"{key}:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError(f"{key} not found in {path}")


@pytest.mark.parametrize(("served", "pin_file", "pin_key"), [
    ("chatchat/Langchain-Chatchat-0.2.8.tar.gz",
     "inventories/lab/group_vars/gpu_nodes/chatchat.yml", "chatchat_source_sha256"),
    ("fixtures/conda/Miniconda3-double-23.11.0-Linux-x86_64.sh",
     "roles/conda/molecule/default/molecule.yml", "conda_installer_sha256"),
])
def test_published_fixture_matches_its_pin(served, pin_file, pin_key):
    data = fetch(RAW + served)
    assert hashlib.sha256(data).hexdigest() == _pinned(pin_file, pin_key)
    assert fetch(RAW + served + ".sha256").decode().split()[0] == hashlib.sha256(data).hexdigest()


def test_the_chatchat_release_is_upstreams_v028_tree():
    with tarfile.open(fileobj=io.BytesIO(fetch(RAW + "chatchat/Langchain-Chatchat-0.2.8.tar.gz"))) as tar:
        names = set(tar.getnames())
    top = "Langchain-Chatchat-0.2.8/"
    for member in ("startup.py", "init_database.py", "webui.py", "copy_config_example.py", "server/api.py",
                   "configs/__init__.py", "requirements.txt", "LICENSE",
                   *(f"configs/{c}_config.py.example" for c in ("basic", "kb", "model", "prompt", "server"))):
        assert top + member in names, member
    assert any(n.startswith(top + "nltk_data/") for n in names)
    assert all(n.startswith(top) for n in names)