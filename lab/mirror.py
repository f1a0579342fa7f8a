#!/usr/bin/env python3
"""The lab's offline mirror: the stand-in for the customers' Nexus, on 127.0.0.1 only.

Usage (with the project venv, which has the pinned servers from lab/requirements-mirror.txt):

    .venv/bin/python lab/mirror.py up       # build what is missing, then start (idempotent; <1 s when up)
    .venv/bin/python lab/mirror.py build    # (re)build the content only; cached, see below
    .venv/bin/python lab/mirror.py lock     # re-resolve the PyPI set into lab/mirror/pypi-lock.txt
    .venv/bin/python lab/mirror.py start    # start the servers, wait until every endpoint answers
    .venv/bin/python lab/mirror.py stop     # stop every process it started, remove .lab/mirror/run
    .venv/bin/python lab/mirror.py status   # endpoint -> up/down (exit 1 when any is down)
    .venv/bin/python lab/mirror.py models [--json]        # model repos: URLs, v1/v2 commits, sizes, files
    .venv/bin/python lab/mirror.py bench-model --size-mb N  # publish bench data (not part of `build`)

`make mirror` runs `up`; `make lab-down` runs `stop` (through labctl.py down).

Endpoints (base http://127.0.0.1:18080, port from LAB_MIRROR_PORT), the lab column of
CONTRIBUTING.md's "Mirror URL contract":

    /repository/pypi-proxy/simple/   pypiserver (a real PyPI simple index) serving .lab/mirror/pypi/:
                                     exactly the pins of lab/mirror/pypi-lock.txt (what the lab's GPU
                                     nodes install plus lab/mirror/pypi-packages.txt, resolved as ONE
                                     set by `lock` for CPython 3.11 on x86_64, the nodes' Python),
                                     downloaded once into CHATFLEET_CACHE (~/.cache/chatfleet) from
                                     this machine's configured index, linked from there.
    /repository/raw-hosted/          static files (autoindex): lab/mirror/raw/ plus generated files
                                     (lab/hello-1.0.0.tar.gz), the upstream Chatchat release
                                     (chatchat/Langchain-Chatchat-0.2.8.tar.gz, from
                                     CHATFLEET_UPSTREAM_DIR, default ../shared/upstream) and the
                                     test doubles published from molecule/fixtures/ under fixtures/
                                     (see raw_generated()),
                                     a <file>.sha256 per file, SHA256SUMS.
    /repository/apt-debian/          Debian-layout apt repository, suite bookworm, component main,
                                     amd64, UNSIGNED (nodes need `[trusted=yes]`): the packages in
                                     lab/mirror/apt-packages.txt plus exactly the dependencies that a
                                     node made from the base image lacks (no Recommends), computed by
                                     `apt-get install --download-only` in a throwaway container.
    /repository/models/<org>/<repo>.git
                                     bare git repositories over git's dumb HTTP protocol; Git LFS
                                     batches go to giftless (local storage) through
                                     <repo>.git/info/lfs/, git-lfs's default endpoint, and the
                                     object downloads it hands out are served by nginx from
                                     giftless's storage, so a plain `git clone` with git-lfs
                                     installed fetches real content. Read-only through the front door.
                                     Built: the Hugging Face-format doubles of lab/models/generate.py,
                                     lab/tiny-gpt2 (llm) and lab/tiny-bert-embed (embedding), each
                                     with two commits on main tagged v1 and v2 (reproducible SHAs;
                                     `models` lists them).
    /hf/<org>/<repo>                 the same repositories in a Hugging Face-mirror layout (no .git);
                                     git-lfs's derived endpoint /hf/<org>/<repo>.git/info/lfs/ is
                                     mapped to the repository's giftless path.
    /repository/raw-hosted/bench/    `bench-model --size-mb N`: the plain-file copy of
                                     models/bench/bulk-<N>m.git's files (4 LFS files of N/4 MiB of
                                     random bytes, config.json, README.md), <file>.sha256 each and
                                     SHA256SUMS; kept in .lab/mirror/bench/, which `build` never touches.
    /repository/conda-proxy/         404: no conda channel (nor conda/micromamba binary) can be
                                     obtained on the lab machines, so there is nothing to serve.

Ports: nginx on LAB_MIRROR_PORT (18080), pypiserver on +1, giftless (waitress) on +2
(`stop` before changing LAB_MIRROR_PORT). Tests: `.venv/bin/pytest -q tests/lab` (about 10 s).
State under .lab/mirror/ (git-ignored): content in pypi/, raw/, apt/, models/, lfs/, bench/;
pid files and rendered configs in run/; logs in log/; build stamps in stamps/.

Caching: each build step records a stamp (hash of its inputs: package list, base image id,
generator version; for models the generator's sources); a step whose stamp matches is skipped,
so a warm `up` only checks the servers. Delete .lab/mirror/stamps/ (or the content dir) to
force a step. The pypi step downloads only the lock's files the cache lacks; the apt step seeds apt's archive dir
with the current pool so only missing .deb files are downloaded. `start`/`up` reload a running
nginx gracefully (SIGHUP) when its rendered configuration changed.

Host needs (installed by `labctl.py host`): nginx-light, apt-utils (apt-ftparchive), git,
git-lfs, docker (running) and the base image (`labctl.py image`).
Registry host names are never written here: pip uses its configured index, apt the
host's /etc/apt sources.
"""
from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.models import generate as model_gen  # noqa: E402  (the model doubles' generator)

CONF_DIR = ROOT / "lab" / "mirror"
STATE = ROOT / ".lab" / "mirror"
RUN = STATE / "run"
LOG = STATE / "log"
STAMPS = STATE / "stamps"
PYPI_DIR = STATE / "pypi"
RAW_DIR = STATE / "raw"
APT_DIR = STATE / "apt"
MODELS_DIR = STATE / "models"
LFS_DIR = STATE / "lfs"
BENCH_DIR = STATE / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
# Downloads kept across clones and CI runs (the PyPI set is about 700 MB).
CACHE = Path(os.environ.get("CHATFLEET_CACHE", Path.home() / ".cache" / "chatfleet"))
PYPI_CACHE = CACHE / "pypi"
# Third-party input that is never copied into the repository: the upstream Chatchat tarball
# (../shared/upstream on the build machines; README.md, 'The Chatchat source').
UPSTREAM_DIR = Path(os.environ.get("CHATFLEET_UPSTREAM_DIR", ROOT.parent / "shared" / "upstream"))
CHATCHAT_TARBALL = "Langchain-Chatchat-0.2.8.tar.gz"
PYPI_PACKAGES = CONF_DIR / "pypi-packages.txt"
PYPI_LOCK = CONF_DIR / "pypi-lock.txt"
PYTHON_ENV_DEFAULTS = ROOT / "roles" / "python_env" / "defaults" / "main.yml"
LAB_PYTHON_ENV = ROOT / "inventories" / "lab" / "group_vars" / "gpu_nodes" / "python_env.yml"

PORT = int(os.environ.get("LAB_MIRROR_PORT", "18080"))
PYPI_PORT = PORT + 1
LFS_PORT = PORT + 2
HOST = "127.0.0.1"
BASE_URL = f"http://{HOST}:{PORT}"
BASE_IMAGE = os.environ.get("LAB_BASE_IMAGE", "chatfleet/debian-systemd:bookworm")
APT_SUITE, APT_COMPONENT, APT_ARCH = "bookworm", "main", "amd64"
MODELS_PREFIX = "/repository/models"
HF_PREFIX = "/hf"
RAW_PREFIX = "/repository/raw-hosted"
PYPI_PREFIX = "/repository/pypi-proxy"


def log(msg: str) -> None:
    print(f"[mirror] {msg}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kwargs)


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a package list."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cached_step(name: str, inputs: str, output: Path, build: Callable[[], None]) -> None:
    """Run build() unless the stamp for `name` matches `inputs` and `output` exists."""
    stamp = STAMPS / name
    if output.exists() and stamp.exists() and stamp.read_text() == inputs:
        log(f"{name}: up to date")
        return
    started = time.monotonic()
    log(f"{name}: building")
    build()
    STAMPS.mkdir(parents=True, exist_ok=True)
    stamp.write_text(inputs)
    log(f"{name}: built in {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- PyPI

def chatchat_source() -> Path:
    """The upstream Langchain-Chatchat v0.2.8 tarball (third-party input, never copied into the repo)."""
    tarball = UPSTREAM_DIR / CHATCHAT_TARBALL
    if not tarball.is_file():
        sys.exit(f"{tarball} is missing: set CHATFLEET_UPSTREAM_DIR to the folder that holds the upstream "
                 f"{CHATCHAT_TARBALL} (README.md, 'The Chatchat source', says how to make it from the v0.2.8 tag)")
    return tarball


def chatchat_requirements() -> str:
    """The release's own requirements.txt, read from the upstream tarball."""
    with tarfile.open(chatchat_source()) as tar:
        member = tar.extractfile(f"{CHATCHAT_TARBALL.removesuffix('.tar.gz')}/requirements.txt")
        return member.read().decode()


def lab_node_requirements() -> tuple[list[str], list[str]]:
    """(requirements, constraints) the lab's GPU nodes install: the release's requirements.txt with the
    lab inventory's python_env edits, and python_env's pins and constraints (inventory over role defaults)."""
    import yaml

    sys.path.insert(0, str(ROOT / "filter_plugins"))
    try:
        from requirement_edits import requirements_edited
    finally:
        sys.path.pop(0)
    settings = {**yaml.safe_load(PYTHON_ENV_DEFAULTS.read_text()), **yaml.safe_load(LAB_PYTHON_ENV.read_text())}
    edited = requirements_edited({"requirements.txt": chatchat_requirements()},
                                 settings.get("python_env_requirement_edits") or {})
    requirements = [line for line in edited.splitlines() if line.split("#", 1)[0].strip()]
    return requirements + settings["python_env_packages"], settings["python_env_constraints"]


def lock_inputs() -> tuple[list[str], list[str]]:
    """(requirements, constraints) the lock resolves: what the lab nodes install plus the mirror's own
    list (lab/mirror/pypi-packages.txt)."""
    requirements, constraints = lab_node_requirements()
    return requirements + read_list(PYPI_PACKAGES), constraints


def lock_fingerprint() -> str:
    return fingerprint(lock_inputs())


def lock_pypi() -> None:
    """Resolve lock_inputs() once (uv, against this machine's index plus its local wheels) into
    lab/mirror/pypi-lock.txt, which `build` then downloads without resolving."""
    requirements, constraints = lock_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "requirements.in").write_text("\n".join(requirements) + "\n")
        (Path(tmp) / "constraints.txt").write_text("\n".join(constraints) + "\n")
        # The wheel folders pip's configuration adds (this machine's torch CPU build), which uv does not read.
        configured = subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "config", "get", "global.find-links"],
                                    capture_output=True, text=True).stdout.split()
        links = [arg for folder in configured for arg in ("--find-links", folder)]
        out = run([str(VENV_BIN / "uv"), "pip", "compile", "--quiet", "--no-header", "--no-annotate",
                   "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28", *links,
                   "--constraint", f"{tmp}/constraints.txt", f"{tmp}/requirements.in"],
                  capture_output=True, text=True).stdout
    pins = [line for line in out.splitlines() if line and not line.startswith(("#", " "))]
    PYPI_LOCK.write_text(
        "# The lab mirror's PyPI set: ONE resolution, written by `.venv/bin/python lab/mirror.py lock`\n"
        "# from lock_inputs() (lab/mirror.py). Do not edit; re-lock after changing those inputs.\n"
        f"# inputs: {lock_fingerprint()}\n" + "\n".join(pins) + "\n")
    log(f"lock: {len(pins)} pins in {PYPI_LOCK.relative_to(ROOT)}")


def locked_pins() -> dict[str, str]:
    """{canonical project name: version} of pypi-lock.txt."""
    from packaging.utils import canonicalize_name

    return {canonicalize_name(name): version
            for name, version in (pin.split("==", 1) for pin in read_list(PYPI_LOCK))}


def cached_file(name: str, version: str) -> Path | None:
    """The downloaded file of `name==version` in the download cache, if there is one."""
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
    from packaging.version import Version

    for path in PYPI_CACHE.glob("*"):
        try:
            project, found = (parse_wheel_filename(path.name)[:2] if path.name.endswith(".whl")
                              else parse_sdist_filename(path.name))
        except ValueError:
            continue
        if canonicalize_name(project) == name and found == Version(version):
            return path
    return None


def build_pypi() -> None:
    def build() -> None:
        # Files are downloaded once into the cache outside the clone (CHATFLEET_CACHE), which later
        # clones and CI runs share; the served directory holds exactly the lock's files, as links.
        PYPI_CACHE.mkdir(parents=True, exist_ok=True)
        pins = locked_pins()
        missing = [f"{name}=={version}" for name, version in pins.items() if cached_file(name, version) is None]
        if missing:
            log(f"pypi: downloading {len(missing)} of {len(pins)} files into {PYPI_CACHE}")
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
                reqs.write("\n".join(missing) + "\n")
                reqs.flush()
                # The machine's configured index and local wheels (torch's CPU build); no resolving.
                run([str(VENV_BIN / "python"), "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                     "--no-deps", "--dest", str(PYPI_CACHE), "--requirement", reqs.name])
        shutil.rmtree(PYPI_DIR, ignore_errors=True)
        PYPI_DIR.mkdir(parents=True)
        for name, version in pins.items():
            source = cached_file(name, version)
            if source is None:
                sys.exit(f"pypi: {name}=={version} is not in {PYPI_CACHE} after the download")
            try:
                os.link(source, PYPI_DIR / source.name)
            except OSError:
                shutil.copy2(source, PYPI_DIR / source.name)

    if read_list(PYPI_LOCK) and PYPI_LOCK.read_text().find(f"# inputs: {lock_fingerprint()}\n") < 0:
        sys.exit(f"{PYPI_LOCK.relative_to(ROOT)} is not the resolution of its inputs any more: "
                 "run `.venv/bin/python lab/mirror.py lock`")
    cached_step("pypi", fingerprint(PYPI_LOCK.read_text()), PYPI_DIR, build)


# --------------------------------------------------------------------------- raw-hosted

RAW_GENERATED_VERSION = "2"
FIXTURES = ROOT / "molecule" / "fixtures"
# Test doubles published under raw-hosted/fixtures/ (named as doubles; only tests point roles at them):
#   molecule/fixtures/conda/build_installer_doubles.py  ->  fixtures/conda/<installer>  (rendered)
CONDA_DOUBLES = FIXTURES / "conda"


def conda_installer_doubles() -> dict[str, bytes]:
    """The installer doubles, rendered from their sources by the fixture's own module."""
    sys.path.insert(0, str(CONDA_DOUBLES))
    try:
        import build_installer_doubles
    finally:
        sys.path.pop(0)
    return build_installer_doubles.installers()


def reproducible_tarball(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A .tar.gz of {member name: (data, mode)}, byte-for-byte reproducible (fixed order, owner, times)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uname, info.gname, info.mode = len(data), 1700000000, "root", "root", mode
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


def raw_generated() -> dict[str, bytes]:
    """Files the build adds to raw-hosted: a sample tarball, the upstream Chatchat release and the
    published test doubles."""
    generated = {
        "lab/hello-1.0.0.tar.gz": reproducible_tarball({
            "hello-1.0.0/bin/hello": (b"#!/bin/sh\necho 'hello from the lab mirror'\n", 0o755),
            "hello-1.0.0/README": (b"A sample application tarball served by the lab mirror.\n", 0o644),
        }),
    }
    generated[f"chatchat/{CHATCHAT_TARBALL}"] = chatchat_source().read_bytes()
    for name, data in conda_installer_doubles().items():
        generated[f"fixtures/conda/{name}"] = data
    return generated


def build_raw() -> None:
    source = CONF_DIR / "raw"
    sources = sorted(p for p in source.rglob("*") if p.is_file())
    generated = raw_generated()
    inputs = fingerprint(RAW_GENERATED_VERSION, [(str(p.relative_to(source)), sha256_file(p)) for p in sources],
                         {name: hashlib.sha256(data).hexdigest() for name, data in generated.items()})

    def build() -> None:
        tmp = STATE / "raw.new"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        for name, data in generated.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        sums = []
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            if path.name.endswith(".sha256") or path.name == "SHA256SUMS":
                continue
            digest = sha256_file(path)
            path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
            sums.append(f"{digest}  {path.relative_to(tmp)}\n")
        (tmp / "SHA256SUMS").write_text("".join(sums))
        shutil.rmtree(RAW_DIR, ignore_errors=True)
        tmp.rename(RAW_DIR)

    cached_step("raw", inputs, RAW_DIR, build)


# --------------------------------------------------------------------------- apt-debian

def image_id() -> str:
    probe = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", BASE_IMAGE],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"base image {BASE_IMAGE} is missing: run `python3 lab/labctl.py image` first")
    return probe.stdout.strip()


def host_apt_sources() -> list[Path]:
    """The host's apt source files (the Debian archive it already uses; never hard-coded here)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
             *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    return [f for f in files if f.is_file() and f.stat().st_size > 0]


def build_apt() -> None:
    pkgs = read_list(CONF_DIR / "apt-packages.txt")
    inputs = fingerprint(pkgs, image_id(), [p.read_text() for p in host_apt_sources()])

    def build() -> None:
        pool = APT_DIR / "pool" / APT_COMPONENT
        work = STATE / "apt-download"
        shutil.rmtree(work, ignore_errors=True)
        (work / "archives" / "partial").mkdir(parents=True)
        (work / "sources").mkdir()
        for i, src in enumerate(host_apt_sources()):
            shutil.copy(src, work / "sources" / f"{i:02d}-{src.name}")
        if pool.is_dir():  # apt reuses archives already present: only the missing ones are fetched
            for deb in pool.glob("*.deb"):
                os.link(deb, work / "archives" / deb.name)
        # In a throwaway container of the base image (a node as installed) with the host's sources:
        # list the full closure apt would fetch (--print-uris, against the image's empty cache),
        # then download it into the bind-mounted archive dir.
        apt_opts = ("-q -o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false"
                    " -o APT::Sandbox::User=root")
        script = (
            "set -e; rm -f /etc/apt/sources.list; rm -rf /etc/apt/sources.list.d/*;"
            " cp /work/sources/* /etc/apt/sources.list.d/;"
            f" apt-get {apt_opts} update >/dev/null;"
            f" apt-get {apt_opts} install -y --print-uris --no-install-recommends {' '.join(pkgs)} > /work/uris;"
            f" DEBIAN_FRONTEND=noninteractive apt-get {apt_opts} -o Dir::Cache::archives=/work/archives"
            f" install -y --download-only --no-install-recommends {' '.join(pkgs)} >/dev/null;"
            " chmod -R a+rX /work/archives"
        )
        run(["docker", "run", "--rm", "--network", "host", "--label", "chatfleet.lab=mirror-build",
             "-v", f"{work}:/work", "--entrypoint", "/bin/sh", BASE_IMAGE, "-c", script])
        # --print-uris lines: 'URI' FILENAME SIZE HASH. Keep exactly that closure in the pool.
        wanted = {line.split()[1] for line in (work / "uris").read_text().splitlines()
                  if line.startswith("'") and len(line.split()) >= 2}
        new_pool = APT_DIR / "pool.new"
        shutil.rmtree(new_pool, ignore_errors=True)
        (new_pool / APT_COMPONENT).mkdir(parents=True)
        for name in sorted(wanted):
            deb = work / "archives" / name
            if not deb.is_file():
                sys.exit(f"apt did not download {name}")
            os.link(deb, new_pool / APT_COMPONENT / name)
        shutil.rmtree(APT_DIR / "pool", ignore_errors=True)
        new_pool.rename(APT_DIR / "pool")
        shutil.rmtree(work)
        apt_index()
        log(f"apt: {len(wanted)} packages in the pool")

    cached_step("apt", inputs, APT_DIR / "dists" / APT_SUITE / "Release", build)


def apt_index() -> None:
    """Write dists/bookworm/{Release,main/binary-amd64/Packages{,.gz}} with apt-ftparchive."""
    binary = APT_DIR / "dists" / APT_SUITE / APT_COMPONENT / f"binary-{APT_ARCH}"
    binary.mkdir(parents=True, exist_ok=True)
    packages = run(["apt-ftparchive", "packages", f"pool/{APT_COMPONENT}"], cwd=APT_DIR,
                   capture_output=True).stdout
    (binary / "Packages").write_bytes(packages)
    with gzip.GzipFile(binary / "Packages.gz", "wb", mtime=0) as gz:
        gz.write(packages)
    (binary / "Release").write_text(
        f"Archive: {APT_SUITE}\nSuite: {APT_SUITE}\nCodename: {APT_SUITE}\n"
        f"Component: {APT_COMPONENT}\nArchitecture: {APT_ARCH}\n")
    release = run(
        ["apt-ftparchive",
         "-o", "APT::FTPArchive::Release::Origin=chatfleet-lab",
         "-o", "APT::FTPArchive::Release::Label=chatfleet-lab",
         "-o", f"APT::FTPArchive::Release::Suite={APT_SUITE}",
         "-o", f"APT::FTPArchive::Release::Codename={APT_SUITE}",
         "-o", f"APT::FTPArchive::Release::Architectures={APT_ARCH}",
         "-o", f"APT::FTPArchive::Release::Components={APT_COMPONENT}",
         "-o", "APT::FTPArchive::Release::Description=chatfleet lab mirror (unsigned)",
         "release", "."],
        cwd=APT_DIR / "dists" / APT_SUITE, capture_output=True).stdout
    (APT_DIR / "dists" / APT_SUITE / "Release").write_bytes(release)


# --------------------------------------------------------------------------- models (git + LFS)

# Bump when publishing changes in a way the generator sources do not show (forces every models step).
MODELS_GENERATOR_VERSION = "2"
MODELS_SOURCES = [ROOT / "lab" / "models" / "generate.py", ROOT / "lab" / "models" / "corpus.py"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "chatfleet lab", "GIT_AUTHOR_EMAIL": "lab@chatfleet.invalid",
    "GIT_COMMITTER_NAME": "chatfleet lab", "GIT_COMMITTER_EMAIL": "lab@chatfleet.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
}
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\n"


def model_urls(org: str, name: str) -> dict[str, str]:
    """The two layouts a model repository is served under (both clonable with git-lfs)."""
    return {"nexus": f"{BASE_URL}{MODELS_PREFIX}/{org}/{name}.git", "hf": f"{BASE_URL}{HF_PREFIX}/{org}/{name}"}


class giftless_running:
    """Context: giftless is up for the duration (started here, and stopped again, if it was not)."""

    def __enter__(self) -> None:
        self.started_here = not SERVICES["giftless"].running()
        if self.started_here:
            render_configs()
            SERVICES["giftless"].start()

    def __exit__(self, *exc: object) -> None:
        if self.started_here:
            SERVICES["giftless"].stop()


def write_file(path: Path, data: bytes | Iterable[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            for chunk in data:
                handle.write(chunk)


def publish_model_repo(org: str, name: str, revisions: list[model_gen.Revision],
                       keep: Callable[[Path], None] | None = None) -> None:
    """(Re)create the bare repo models/<org>/<name>.git: one commit per revision on main, each
    tagged with its name; LFS objects (per the revision's .gitattributes) pushed to giftless.

    Commits carry fixed identities and each revision's date, so their SHAs depend on the file
    contents only. `keep(work_tree)` runs after the last commit, before the work tree is removed.
    """
    bare = MODELS_DIR / org / f"{name}.git"
    lfs_url = f"http://{HOST}:{LFS_PORT}{MODELS_PREFIX}/{org}/{name}.git/info/lfs"
    with tempfile.TemporaryDirectory(prefix="lab-model-", dir=STATE) as tmp:
        env = dict(os.environ, HOME=tmp, **GIT_ENV)
        work = Path(tmp) / "work"

        def git(*args: str, cwd: Path = work, **extra_env: str) -> None:
            run(["git", *args], cwd=cwd, env=dict(env, **extra_env), stdout=subprocess.DEVNULL)

        work.mkdir()
        git("init", "-q", "-b", "main")
        git("lfs", "install", "--local")
        git("config", "lfs.url", lfs_url)
        git("config", "lfs.locksverify", "false")
        for revision in revisions:
            for old in work.iterdir():
                if old.name != ".git":
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
            # .gitattributes first: `git add` reads it to decide what goes to LFS.
            for rel in sorted(revision.files, key=lambda r: r != ".gitattributes"):
                write_file(work / rel, revision.files[rel])
            git("add", "--all")
            git("commit", "-q", "-m", revision.message,
                GIT_AUTHOR_DATE=revision.date, GIT_COMMITTER_DATE=revision.date)
            git("tag", revision.tag)
        if keep is not None:
            keep(work)
        new_bare = bare.with_name(bare.name + ".new")
        shutil.rmtree(new_bare, ignore_errors=True)
        new_bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", str(new_bare), cwd=Path(tmp))
        git("remote", "add", "origin", str(new_bare))
        git("lfs", "push", "--all", "origin")
        git("push", "-q", "--no-verify", "origin", "main:main", "refs/tags/*:refs/tags/*")
        git("update-server-info", cwd=new_bare)
        run(["chmod", "-R", "a+rX", str(new_bare)])
        if (bare / "info" / "refs").is_file() and \
                (bare / "info" / "refs").read_bytes() == (new_bare / "info" / "refs").read_bytes():
            shutil.rmtree(new_bare)  # the same commits: leave the served repository untouched
            log(f"{org}/{name}: unchanged")
            return
        # Swap with two renames, so a concurrent clone sees the old or the new repository.
        old_bare = bare.with_name(bare.name + ".old")
        shutil.rmtree(old_bare, ignore_errors=True)
        if bare.exists():
            bare.rename(old_bare)
        new_bare.rename(bare)
        shutil.rmtree(old_bare, ignore_errors=True)


def models_fingerprint(*extra: object) -> str:
    """Changes with the generator's sources, MODELS_GENERATOR_VERSION or `extra`."""
    return fingerprint(MODELS_GENERATOR_VERSION, [sha256_file(p) for p in MODELS_SOURCES], *extra)


def build_models() -> None:
    """Publish every repository of lab/models/generate.py's MODELS, each its own cached step."""
    for repo in model_gen.MODELS:
        def build(repo: model_gen.ModelRepo = repo) -> None:
            revisions = repo.revisions()
            with giftless_running():
                publish_model_repo(repo.org, repo.name, revisions)

        cached_step(f"models-{repo.org}-{repo.name}", models_fingerprint(repo.org, repo.name),
                    MODELS_DIR / repo.org / f"{repo.name}.git" / "info" / "refs", build)


def repo_summary(bare: Path) -> dict[str, object]:
    """URLs, tags with commit SHAs, and per revision the files (LFS ones with their real size and
    sha256, from the pointers) and the total size of their content, read from a bare repository."""
    org, name = bare.parent.name, bare.name.removesuffix(".git")

    def git(*args: str, data: str | None = None) -> str:
        return run(["git", "--git-dir", str(bare), *args], capture_output=True, text=True, input=data,
                   env=dict(os.environ, **GIT_ENV)).stdout

    tags = dict(line.split()[::-1] for line in git("for-each-ref", "--format=%(objectname) %(refname:short)",
                                                  "refs/tags").splitlines())
    revisions = {}
    for tag in sorted(tags) or ["main"]:
        entries = [line.split(None, 4) for line in git("ls-tree", "-r", "-l", tag).splitlines()]
        small = [oid for _, kind, oid, size, _ in entries if kind == "blob" and int(size) < 1024]
        pointers = {}
        if small:
            out = run(["git", "--git-dir", str(bare), "cat-file", "--batch"], capture_output=True,
                      input="".join(f"{oid}\n" for oid in small).encode()).stdout
            while out:
                header, _, out = out.partition(b"\n")
                oid, _, size = header.decode().split()
                body, out = out[:int(size)], out[int(size) + 1:]
                if body.startswith(LFS_POINTER):
                    fields = dict(line.split(" ", 1) for line in body.decode().splitlines())
                    pointers[oid] = (int(fields["size"]), fields["oid"].removeprefix("sha256:"))
        files = []
        for _, kind, oid, size, path in entries:
            if oid in pointers:
                files.append({"path": path, "size": pointers[oid][0], "lfs": True, "sha256": pointers[oid][1]})
            else:
                files.append({"path": path, "size": int(size), "lfs": False})
        revisions[tag] = {"commit": tags.get(tag) or git("rev-parse", "main").strip(),
                          "bytes": sum(f["size"] for f in files), "files": files}
    kinds = {(m.org, m.name): m.kind for m in model_gen.MODELS}
    return {"repo": f"{org}/{name}", "kind": kinds.get((org, name), "bench" if org == "bench" else "other"),
            "urls": model_urls(org, name), "revisions": revisions}


def models_summary(only_generated: bool = False) -> list[dict[str, object]]:
    if only_generated:
        bares = [MODELS_DIR / m.org / f"{m.name}.git" for m in model_gen.MODELS]
    else:
        bares = sorted(p for p in MODELS_DIR.glob("*/*.git") if p.is_dir())
    return [repo_summary(bare) for bare in bares if (bare / "info" / "refs").exists()]


def print_models(summary: list[dict[str, object]], files: bool = False) -> None:
    for repo in summary:
        print(f"{repo['repo']} ({repo['kind']})")
        for layout, url in repo["urls"].items():
            print(f"  {layout:<6} {url}")
        for tag, rev in repo["revisions"].items():
            print(f"  {tag:<6} {rev['commit']}  {rev['bytes']} bytes")
            if files:
                for f in rev["files"]:
                    lfs = f"lfs sha256:{f['sha256']}" if f["lfs"] else "git"
                    print(f"           {f['size']:>10}  {f['path']}  ({lfs})")


# --------------------------------------------------------------------------- bench (not in the default build)

def bench_model(size_mb: int) -> None:
    """Publish models/bench/bulk-<N>m.git (config.json, README.md, 4 LFS files of N/4 MiB random
    bytes) and the same files as plain downloads under raw-hosted/bench/bulk-<N>m/ (BENCH_DIR, its
    own nginx location: `build` never touches it), each with <file>.sha256, plus SHA256SUMS."""
    if size_mb < 1:
        sys.exit("--size-mb must be at least 1")
    name = f"bulk-{size_mb}m"
    bare, plain = MODELS_DIR / "bench" / f"{name}.git", BENCH_DIR / name
    step = f"bench-{name}"
    if not (bare / "info" / "refs").exists():
        (STAMPS / step).unlink(missing_ok=True)
    files: dict[str, bytes | Iterable[bytes]] = dict(model_gen.bench_small_files(size_mb))

    def copy_plain(work: Path) -> None:
        new = plain.with_name(plain.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        sums = []
        for rel in sorted(files):
            if rel == ".gitattributes":
                continue
            os.link(work / rel, new / rel)  # same file system (the work tree is under STATE)
            digest = sha256_file(new / rel)
            (new / f"{rel}.sha256").write_text(f"{digest}  {rel}\n")
            sums.append(f"{digest}  {rel}\n")
        (new / "SHA256SUMS").write_text("".join(sums))
        run(["chmod", "-R", "a+rX", str(new)])
        shutil.rmtree(plain, ignore_errors=True)
        new.rename(plain)

    def build() -> None:
        for i, file_name in enumerate(model_gen.bench_file_names()):
            files[file_name] = model_gen.bench_chunks(size_mb, i)
        revision = model_gen.Revision("v1", "2024-01-01T00:00:00Z",
                                      f"bench/{name}: {size_mb} MiB of random bytes in {model_gen.BENCH_FILES} "
                                      "LFS files", files)
        with giftless_running():
            publish_model_repo("bench", name, [revision], keep=copy_plain)

    cached_step(step, models_fingerprint("bench", size_mb), plain / "SHA256SUMS", build)
    print_models([repo_summary(bare)], files=True)
    print(f"  plain  {BASE_URL}{RAW_PREFIX}/bench/{name}/  (<file>, <file>.sha256, SHA256SUMS)")


def build() -> None:
    for d in (PYPI_DIR, RAW_DIR, APT_DIR, MODELS_DIR, LFS_DIR, LOG, STAMPS):
        d.mkdir(parents=True, exist_ok=True)
    build_raw()
    build_pypi()
    build_apt()
    build_models()
    log("models (pin these; sizes are the revision's file contents, LFS objects at full size):")
    print_models(models_summary(only_generated=True))


# --------------------------------------------------------------------------- processes

def http_status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


class Service:
    def __init__(self, name: str, argv: Callable[[], list[str]], health: str, marker: str,
                 env: Callable[[], dict[str, str]] | None = None) -> None:
        self.name, self._argv, self.health, self._env = name, argv, health, env
        self.marker = marker.encode()  # a string in the process's command line: the pid is still ours
        self.pidfile = RUN / f"{name}.pid"

    def pid(self) -> int | None:
        """The recorded pid if that process is alive and is still ours (its cmdline names our state)."""
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if self.marker in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def healthy(self) -> bool:
        return 200 <= http_status(self.health) < 500

    def start(self) -> None:
        if self.running():
            return
        # Something else answers on our address (another checkout's mirror, say): a new process
        # could not bind, yet the health check below would pass against the stranger.
        if self.healthy():
            sys.exit(f"{self.name}: {self.health} is answered by a process this checkout did not start "
                     f"(another checkout's lab mirror?): stop it there (`lab/mirror.py stop`) and retry")
        LOG.mkdir(parents=True, exist_ok=True)
        with open(LOG / f"{self.name}.log", "ab") as logfile:
            proc = subprocess.Popen(self._argv(), stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=STATE, start_new_session=True,
                                    env=dict(os.environ, **(self._env() if self._env else {})))
        self.pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                sys.exit(f"{self.name} exited with {proc.returncode}; see {LOG / (self.name + '.log')}")
            if self.healthy():
                log(f"{self.name} up (pid {proc.pid})")
                return
            time.sleep(0.2)
        sys.exit(f"{self.name} did not answer {self.health} within 30s; see {LOG / (self.name + '.log')}")

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
                os.killpg(pid, signal.SIGKILL)
            log(f"{self.name} stopped (pid {pid})")
        self.pidfile.unlink(missing_ok=True)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _giftless_env() -> dict[str, str]:
    return {"GIFTLESS_CONFIG_FILE": str(RUN / "giftless.yaml")}


SERVICES: dict[str, Service] = {
    "pypiserver": Service(
        "pypiserver",
        lambda: [str(VENV_BIN / "pypi-server"), "run", "--host", HOST, "--port", str(PYPI_PORT),
                 "--server", "auto", "--disable-fallback", "--authenticate", ".", "--passwords", ".",
                 "--hash-algo", "sha256", "--backend", "simple-dir", "--server-base-url", PYPI_PREFIX, str(PYPI_DIR)],
        f"http://{HOST}:{PYPI_PORT}{PYPI_PREFIX}/health", str(PYPI_DIR)),
    "giftless": Service(
        "giftless",
        lambda: [str(VENV_BIN / "waitress-serve"), f"--listen={HOST}:{LFS_PORT}", f"--url-prefix={MODELS_PREFIX}",
                 "--threads=8", "giftless.wsgi_entrypoint:app"],
        # Any answer from the app (a 404 for an unknown route) means it is serving.
        f"http://{HOST}:{LFS_PORT}{MODELS_PREFIX}/", f"--listen={HOST}:{LFS_PORT}",
        _giftless_env),
    "nginx": Service(
        "nginx",
        lambda: ["nginx", "-p", str(STATE) + "/", "-c", str(RUN / "nginx.conf"), "-g", "daemon off;"],
        f"{BASE_URL}/", str(RUN / "nginx.conf")),
}


def render(template: Path, dest: Path, values: dict[str, str]) -> None:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    dest.write_text(text)


def render_configs() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (RUN / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
    key_file = RUN / "giftless-jwt.key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    values = {
        "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
        "RUN": str(RUN), "LOG": str(LOG), "DATA": str(STATE),
        "PORT": str(PORT), "PYPI_PORT": str(PYPI_PORT), "LFS_PORT": str(LFS_PORT),
        "JWT_KEY": key_file.read_text(),
    }
    render(CONF_DIR / "nginx.conf.in", RUN / "nginx.conf", values)
    render(CONF_DIR / "giftless.yaml.in", RUN / "giftless.yaml", values)


def nginx_reload_if_stale(started_now: bool) -> None:
    """Reload a running nginx gracefully (SIGHUP: in-flight downloads finish on the old workers)
    when RUN/nginx.conf is not the configuration it was started or last reloaded with, e.g. after
    lab/mirror/nginx.conf.in changed. `nginx -t` checks the new file before the running one is touched."""
    nginx, conf, loaded = SERVICES["nginx"], RUN / "nginx.conf", RUN / "nginx.conf.loaded"
    digest = sha256_file(conf)
    pid = nginx.pid()
    if pid is not None and not started_now and not (loaded.exists() and loaded.read_text() == digest):
        check = subprocess.run(["nginx", "-t", "-q", "-p", str(STATE) + "/", "-c", str(conf)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            sys.exit(f"nginx kept its running configuration: {conf} fails `nginx -t`:\n{check.stderr}")
        os.kill(pid, signal.SIGHUP)
        log(f"nginx reloaded with the changed {conf.name} (pid {pid})")
    if pid is not None:
        loaded.write_text(digest)


# The model repository the health checks probe (both layouts, git and LFS).
PROBE_ORG, PROBE_MODEL = "lab", "tiny-gpt2"
ENDPOINTS = {
    "front door": f"{BASE_URL}/",
    "pypi-proxy": f"{BASE_URL}/repository/pypi-proxy/simple/",
    "raw-hosted": f"{BASE_URL}/repository/raw-hosted/SHA256SUMS",
    "apt-debian": f"{BASE_URL}/repository/apt-debian/dists/{APT_SUITE}/Release",
    "models (git)": f"{model_urls(PROBE_ORG, PROBE_MODEL)['nexus']}/info/refs",
    "models hf (git)": f"{model_urls(PROBE_ORG, PROBE_MODEL)['hf']}/info/refs",
}
LFS_BATCH = {
    "models (lfs)": f"{model_urls(PROBE_ORG, PROBE_MODEL)['nexus']}/info/lfs/objects/batch",
    "models hf (lfs)": f"{model_urls(PROBE_ORG, PROBE_MODEL)['hf']}.git/info/lfs/objects/batch",
}


def lfs_batch_status(url: str) -> int:
    """Ask an LFS batch API (through the front door) for the probe model's model.safetensors,
    as its pointer on main names it."""
    bare = MODELS_DIR / PROBE_ORG / f"{PROBE_MODEL}.git"
    pointer = subprocess.run(["git", "--git-dir", str(bare), "cat-file", "-p", "main:model.safetensors"],
                             capture_output=True, text=True).stdout
    fields = dict(line.split(" ", 1) for line in pointer.splitlines() if " " in line)
    if "oid" not in fields:
        return 0
    obj = {"oid": fields["oid"].removeprefix("sha256:"), "size": int(fields["size"])}
    body = json.dumps({"operation": "download", "transfers": ["basic"], "objects": [obj]}).encode()
    return http_status(url, body, {"Accept": "application/vnd.git-lfs+json",
                                   "Content-Type": "application/vnd.git-lfs+json"})


def endpoint_states() -> dict[str, bool]:
    states = {name: http_status(url) == 200 for name, url in ENDPOINTS.items()}
    states.update({name: lfs_batch_status(url) == 200 for name, url in LFS_BATCH.items()})
    return states


def start() -> None:
    if not (APT_DIR / "dists").exists() or not (MODELS_DIR / "lab").exists():
        sys.exit("the mirror has not been built: run `lab/mirror.py up` (or build)")
    render_configs()
    nginx_was_running = SERVICES["nginx"].running()
    for service in SERVICES.values():
        if service.running() and not service.healthy():
            log(f"{service.name} is running but not answering: restarting it")
            service.stop()
        service.start()
    nginx_reload_if_stale(started_now=not nginx_was_running)
    deadline = time.monotonic() + 30
    while True:
        states = endpoint_states()
        if all(states.values()):
            log(f"mirror up at {BASE_URL}/repository/")
            return
        if time.monotonic() > deadline:
            down = ", ".join(name for name, ok in states.items() if not ok)
            sys.exit(f"endpoints not answering: {down}; logs in {LOG}")
        time.sleep(0.3)


def stop() -> None:
    for service in reversed(list(SERVICES.values())):
        service.stop()
    shutil.rmtree(RUN, ignore_errors=True)


def status() -> int:
    states = endpoint_states()
    for name, service in SERVICES.items():
        pid = service.pid()
        print(f"{'process ' + name:<22} {'running (pid %d)' % pid if pid else 'stopped'}")
    for name, ok in states.items():
        print(f"{name:<22} {'up' if ok else 'down'}")
    return 0 if all(states.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "build", "lock", "start", "stop", "status", "models", "bench-model"])
    parser.add_argument("--json", action="store_true", help="models: print the summary as JSON")
    parser.add_argument("--size-mb", type=int, help="bench-model: MiB of random data (4 LFS files)")
    args = parser.parse_args()
    if args.command == "bench-model" and args.size_mb is None:
        parser.error("bench-model needs --size-mb N")
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    lock = open(STATE / ".lock", "w")  # one mirror.py at a time (parallel `make` targets call `up`)
    if args.command not in ("status", "models"):
        fcntl.flock(lock, fcntl.LOCK_EX)
    if args.command == "up":
        build()
        start()
    elif args.command == "build":
        build()
    elif args.command == "lock":
        lock_pypi()
    elif args.command == "start":
        start()
    elif args.command == "stop":
        stop()
    elif args.command == "status":
        sys.exit(status())
    elif args.command == "models":
        summary = models_summary()
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print_models(summary, files=True)
    elif args.command == "bench-model":
        bench_model(args.size_mb)
    if args.command in ("up", "build", "bench-model"):
        log(f"{args.command} done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
