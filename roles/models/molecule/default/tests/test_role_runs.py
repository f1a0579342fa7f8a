"""Run the models role again against the scenario's nodes with other inputs."""
from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import CACHE, MODELS, NODE, ROOT_PATH, STORE
from testlib import MIRROR_URL, MirrorRequests, PlaybookRun, docker_exec, run_role

# The scenario's repositories: requests for others (a benchmark sharing the mirror) do not count.
MODELS_PREFIX = "/repository/models/lab/"


def changed(run: PlaybookRun, node: str) -> int:
    assert node in run.recap, run
    return run.recap[node]["changed"]


def link_target(node: str, name: str) -> str:
    return docker_exec(node, "readlink", f"{ROOT_PATH}/{name}").stdout.strip()


def sha256(node: str, path: str) -> str:
    return docker_exec(node, "sha256sum", path).stdout.split()[0]


def lfs_files(lab, name: str, tag: str = "v1") -> dict[str, str]:
    return {path: f["sha256"] for path, f in lab.files(name, tag).items() if f["lfs"]}


def state(node: str) -> dict:
    """What a stopped run must leave as it was: the model links, every active file, the scenario's
    models' revisions in the store (a failed pull of a new model keeps its .staging-* directory
    on purpose, to resume from; its link is never made)."""
    sh = lambda command: docker_exec(node, "sh", "-c", command, check=False).stdout  # noqa: E731
    return {"links": sh(f"cd {ROOT_PATH} && for l in *; do echo $l $(readlink $l); done"),
            "files": sh(f"cd {ROOT_PATH} && find -L {' '.join(MODELS)} -type f -exec sha256sum {{}} + | sort"),
            "store": sh(f"cd {STORE} && find {' '.join(MODELS)} -mindepth 1 -maxdepth 1 | sort")}


def as_converged(lab, node: str) -> bool:
    return all(link_target(node, name) == f"{STORE}/{name}/{lab.revision(name)}" for name in MODELS)


@pytest.fixture
def converged(lab):
    """Whatever a test did, leave both nodes as converge left them (v1 everywhere, nothing extra):
    the extra-* models go; the role runs again only on a node whose models are not at v1 (a test
    that failed half-way), so a passing test costs no run."""
    yield
    for node in (CACHE, NODE):
        docker_exec(node, "sh", "-c", f"rm -rf {ROOT_PATH}/extra-* {STORE}/extra-*", check=False)
    docker_exec(CACHE, "systemctl", "start", "chatfleet-models-cache", check=False)
    stale = [node for node in (CACHE, NODE) if not as_converged(lab, node)]
    if stale:
        run = run_role("models", hosts=":".join(stale), extra_vars={"models_manifest": lab.manifest()})
        assert run.rc == 0, run


@pytest.mark.idempotence
def test_second_run_changes_nothing_and_asks_the_mirror_nothing(lab):
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=f"{CACHE}:{NODE}")
    assert run.rc == 0, run
    assert changed(run, CACHE) == 0 and changed(run, NODE) == 0, run
    assert mirror.paths(MODELS_PREFIX) == []


@pytest.mark.check_mode
def test_check_mode_on_converged_nodes_changes_nothing():
    run = run_role("models", "--check", hosts=f"{CACHE}:{NODE}")
    assert run.rc == 0, run
    assert run.changed == 0, run


def test_node_takes_the_objects_from_the_cache_not_the_mirror(lab, converged):
    name = "tiny-gpt2"
    docker_exec(NODE, "sh", "-c", f"rm -rf {ROOT_PATH}/{name} {STORE}/{name}")
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=NODE)
    assert run.rc == 0, run
    assert changed(run, NODE) == 1, run
    assert mirror.lfs_downloads(MODELS_PREFIX) == []          # every object came over rsync
    assert mirror.paths(f"{MODELS_PREFIX}{name}.git/info/refs")  # metadata still from the mirror
    for path, oid in lfs_files(lab, name).items():
        assert sha256(NODE, f"{ROOT_PATH}/{name}/{path}") == oid, path


@pytest.mark.fault
def test_without_the_cache_the_node_falls_back_to_the_mirror(lab, converged):
    name = "tiny-bert-embed"
    docker_exec(NODE, "sh", "-c", f"rm -rf {ROOT_PATH}/{name} {STORE}/{name}")
    docker_exec(CACHE, "systemctl", "stop", "chatfleet-models-cache")
    try:
        with MirrorRequests() as mirror:
            run = run_role("models", hosts=NODE)
    finally:
        docker_exec(CACHE, "systemctl", "start", "chatfleet-models-cache")
    assert run.rc == 0, run
    assert "model tiny-bert-embed: the cache rsync://" in run.flat and "gave rc=" in run.flat, run  # a warning
    assert sorted(mirror.lfs_downloads(MODELS_PREFIX)) == sorted(lfs_files(lab, name).values())


@pytest.mark.fault
def test_corrupt_weights_are_detected_and_fetched_again(lab, converged):
    name = "tiny-gpt2"
    weights = f"{ROOT_PATH}/{name}/model.safetensors"
    oid = lfs_files(lab, name)["model.safetensors"]
    docker_exec(CACHE, "sh", "-c", f"printf 'XXXX' | dd of={weights} bs=1 seek=4096 conv=notrunc status=none")
    corrupt = sha256(CACHE, weights)
    assert corrupt != oid

    check = run_role("models", "--check", hosts=CACHE)
    assert check.rc == 0, check
    assert changed(check, CACHE) == 1, check
    assert sha256(CACHE, weights) == corrupt     # check mode left it alone

    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE)
    assert run.rc == 0, run
    assert changed(run, CACHE) == 1, run
    assert sha256(CACHE, weights) == oid
    assert mirror.lfs_downloads(MODELS_PREFIX) == [oid]       # that object only
    assert link_target(CACHE, name) == f"{STORE}/{name}/{lab.revision(name)}"


@pytest.mark.fault
def test_a_pointer_left_in_place_of_weights_is_replaced(lab, converged):
    name = "tiny-bert-embed"
    weights = f"{ROOT_PATH}/{name}/model.safetensors"
    oid = lfs_files(lab, name)["model.safetensors"]
    pointer = lab.repos[name].git("show", f"{lab.revision(name)}:model.safetensors")
    docker_exec(NODE, "sh", "-c", f"rm {weights} && cat > {weights} <<'EOF'\n{pointer}EOF")
    run = run_role("models", hosts=NODE)
    assert run.rc == 0, run
    assert changed(run, NODE) == 1, run
    assert sha256(NODE, weights) == oid


class StallingMirror:
    """Test double (fault injection): an HTTP proxy in front of the lab mirror (git and the LFS
    batch API, GET and POST) that serves everything unchanged except the LFS object `stall_oid`:
    of that one it sends the first `keep_bytes` and then holds the connection open until released,
    as a transfer that hangs half-way does. The mirror writes LFS hrefs from the Host header, so
    the objects are fetched through the proxy too, and `completed` lists the objects this
    scenario downloaded (the mirror's own log also holds other scenarios' pulls of the same
    lab repositories)."""

    def __init__(self, upstream: str, stall_oid: str | None = None, keep_bytes: int = 64 << 10):
        self.upstream, self.stall_oid, self.keep_bytes = upstream.rstrip("/"), stall_oid, keep_bytes
        self.stalled, self.release = threading.Event(), threading.Event()
        self.completed: list[str] = []
        self.requests: list[str] = []  # "METHOD path status", for a failure's message

    def __enter__(self) -> "StallingMirror":
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            return data
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "transfer-encoding", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers,
                                                 method=self.command)
                try:
                    upstream = urllib.request.urlopen(request, timeout=30)  # noqa: S310
                except urllib.error.HTTPError as error:
                    upstream = error
                with upstream:
                    # A resumed transfer (a Range request, 206) of the object stalls as well.
                    stall = bool(proxy.stall_oid) and proxy.stall_oid in self.path and upstream.status in (200, 206)
                    data = upstream.read(proxy.keep_bytes) if stall else upstream.read()
                    proxy.requests.append(f"{self.command} {self.path.split('?')[0]} {upstream.status}"
                                          f"{' (stalled)' if stall else ''}")
                    self.send_response(upstream.status)
                    for name, value in upstream.headers.items():
                        if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", upstream.headers.get("Content-Length", str(len(data)))
                                     if stall else str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    if stall:
                        proxy.stalled.set()
                        proxy.release.wait(120)
                    elif "/info/lfs/objects/storage/" in self.path:
                        proxy.completed.append(self.path.split("?")[0].rsplit("/", 1)[-1])
                self.close_connection = True

            do_GET = do_POST = _forward  # noqa: N815 (http.server's naming)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def kill_the_pull(node: str, staging: str) -> str:
    """SIGKILL, at once, every process that holds a file of the pull's staging checkout open: the
    model_pull module writing its downloads (and git-lfs, were it fetching). The nodes have no
    procps: read /proc. Prints each killed process's pid and name."""
    script = r"""
pids=
for p in /proc/[0-9]*; do
  [ "$p" = /proc/$$ ] && continue
  ls -l $p/fd 2>/dev/null | grep -q -- " -> $1/" || continue
  pids="$pids ${p#/proc/}"
  echo "${p#/proc/} $(cat $p/comm)"
done
[ -z "$pids" ] || kill -9 $pids"""
    return docker_exec(node, "sh", "-c", script, "kill-the-pull", staging).stdout.strip()


@pytest.mark.fault
def test_an_interrupted_pull_leaves_the_active_revision_and_resumes(lab, converged):
    """A revision change of a model whose new revision shares no object with the active one: one
    object arrives, the other hangs half-way and the pull (the module writing it) is SIGKILLed. The
    active revision stays linked and intact; the next run downloads only the unfinished object."""
    name = "extra-resume"
    old = lab.extra(name, repo="lab/tiny-bert-embed", revision=lab.revision("tiny-bert-embed"),
                    size=lab.size("tiny-bert-embed"), kind="embedding")
    new = lab.extra(name)  # tiny-gpt2 v1
    setup = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[old])})
    assert setup.rc == 0, setup
    active = f"{STORE}/{name}/{lab.revision('tiny-bert-embed')}"
    assert link_target(CACHE, name) == active
    objects = lfs_files(lab, "tiny-gpt2")
    hanging, finished = objects["model.safetensors"], objects["tokenizer.json"]
    staging = f"{STORE}/{name}/.staging-{lab.revision('tiny-gpt2')}"
    finished_object = f"{staging}/.git/lfs/objects/{finished[:2]}/{finished[2:4]}/{finished}"

    outcome: dict = {}
    with StallingMirror(MIRROR_URL, stall_oid=hanging) as proxy:
        pull = threading.Thread(target=lambda: outcome.update(run=run_role(
            "models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[new]),
                                               "models_mirror_url": f"{proxy.url}/repository/models",
                                               "models_lfs_concurrent_transfers": 2})))
        pull.start()
        assert proxy.stalled.wait(180), "the pull never reached the hanging object"
        deadline = time.monotonic() + 60
        while docker_exec(CACHE, "test", "-f", finished_object, check=False).returncode != 0:
            assert time.monotonic() < deadline, "the other object never finished"
            time.sleep(0.2)
        killed = kill_the_pull(CACHE, staging)
        pull.join(180)
        assert "python" in killed, (f"no module process to kill ({killed!r}); the proxy saw {proxy.requests}; "
                        f"the pull ended by itself: {outcome.get('run')!r}")
    run = outcome["run"]
    assert run.rc != 0, run
    # The active revision is still linked, and intact.
    assert link_target(CACHE, name) == active
    for path, oid in lfs_files(lab, "tiny-bert-embed").items():
        assert sha256(CACHE, f"{ROOT_PATH}/{name}/{path}") == oid, path
    assert docker_exec(CACHE, "test", "-f", finished_object, check=False).returncode == 0

    with StallingMirror(MIRROR_URL) as counting:
        again = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[new]),
                                                              "models_mirror_url": f"{counting.url}/repository/models"})
    assert again.rc == 0, again
    assert changed(again, CACHE) == 1, again
    assert counting.completed == [hanging]   # the finished object is not fetched again
    # ... and the unfinished one resumes where it stopped (an HTTP range, answered 206).
    assert [r.rsplit(" ", 1)[1] for r in counting.requests if r.startswith("GET ") and hanging in r] == ["206"], \
        counting.requests
    assert link_target(CACHE, name) == f"{STORE}/{name}/{lab.revision('tiny-gpt2')}"
    for path, oid in objects.items():
        assert sha256(CACHE, f"{ROOT_PATH}/{name}/{path}") == oid, path
    assert docker_exec(CACHE, "test", "-e", staging, check=False).returncode != 0
    leftovers = docker_exec(CACHE, "find", f"{STORE}/{name}/{lab.revision('tiny-gpt2')}", "-name", "*.chatfleet-*")
    assert leftovers.stdout == ""


def test_a_revision_change_moves_the_model_and_downloads_only_what_changed(lab, converged):
    name = "tiny-gpt2"
    v1, v2 = lfs_files(lab, name, "v1"), lfs_files(lab, name, "v2")
    # Only the active revision stays, so v2's new objects really have to come from the mirror.
    docker_exec(CACHE, "sh", "-c", f"cd {STORE}/{name} && ls -A | grep -v '^{lab.revision(name)}' | xargs -r rm -rf")
    with StallingMirror(MIRROR_URL) as counting:
        run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest({name: "v2"}),
                                                            "models_mirror_url": f"{counting.url}/repository/models"})
    assert run.rc == 0, run
    assert changed(run, CACHE) == 1, run
    assert link_target(CACHE, name) == f"{STORE}/{name}/{lab.revision(name, 'v2')}"
    changed_objects = sorted(set(v2.values()) - set(v1.values()))
    assert changed_objects, "v2 of the lab model must change some weights"
    assert sorted(counting.completed) == changed_objects
    for path, oid in v2.items():
        assert sha256(CACHE, f"{ROOT_PATH}/{name}/{path}") == oid, path
    # The previous revision is kept (models_keep_revisions 2), intact, for a rollback.
    previous = f"{STORE}/{name}/{lab.revision(name, 'v1')}"
    for path, oid in v1.items():
        assert sha256(CACHE, f"{previous}/{path}") == oid, path

    with MirrorRequests() as mirror:
        back = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest()})
    assert back.rc == 0, back
    assert changed(back, CACHE) == 1, back
    assert link_target(CACHE, name) == previous
    assert mirror.paths(MODELS_PREFIX) == []      # switching back needs nothing from the mirror


@pytest.mark.bad_input
def test_a_manifest_the_disk_cannot_hold_stops_in_preflight(lab, converged):
    """The preflight path: sizes from models_manifest against the free disk (model_space). The
    manifest's own rules (revision, kind, size, name, repo, duplicates) are unit-tested in
    tests/unit/plugins/filter/test_models_manifest.py."""
    extra = lab.extra("extra-huge", size="100T")
    before = state(CACHE)
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[extra])})
    assert run.rc != 0, run
    assert changed(run, CACHE) == 0, run
    failure = run.failure(CACHE)
    assert "Not enough disk for the models on host models-cache: extra-huge need" in failure["msg"], failure
    assert "(sizes from models_manifest" in failure["msg"], failure
    assert mirror.paths(MODELS_PREFIX) == []
    assert docker_exec(CACHE, "test", "-e", f"{STORE}/extra-huge", check=False).returncode != 0
    assert state(CACHE) == before


@pytest.mark.bad_input
def test_bad_sources_fail_naming_each_model_and_leave_every_active_revision(lab, converged):
    """The pull path, one run: each model is pulled on its own, so every bad entry fails with its own
    message - a size the repository does not match (found before any object is downloaded), a
    revision the repository lacks, a repository the mirror lacks, a mirror that is down - and
    the active models stay as they were."""
    v2 = lab.revision("tiny-gpt2", "v2")
    bad = [lab.extra("extra-size", size="10K"),
           lab.extra("extra-norev", revision="0" * 40),
           lab.extra("extra-norepo", repo="lab/no-such-model", revision=v2),
           lab.extra("extra-down", url="http://127.0.0.1:9/repository/models/lab/tiny-gpt2.git", revision=v2)]
    before = state(CACHE)
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=bad),
                                                            "models_fetch_attempts": 1})
    assert run.rc != 0, run
    assert changed(run, CACHE) == 0, run
    failure = run.failure(CACHE)
    assert failure["task"].endswith("Pull, verify and activate each model"), failure
    expected = {
        "extra-size": [f"({MIRROR_URL}/repository/models/lab/tiny-gpt2.git @ ",
                       f"holds {lab.size('tiny-gpt2')} bytes but the manifest says 10240"],
        "extra-norev": ["revision 0000000000000000000000000000000000000000 is not in the repository"],
        "extra-norepo": ["fetching the repository failed", "no-such-model.git/", "not found"],
        "extra-down": ["fetching the repository failed", "Failed to connect to 127.0.0.1 port 9"],
    }
    starts = sorted((failure["msg"].index(f"model {name} ("), name) for name in expected
                    if f"model {name} (" in failure["msg"])
    assert [name for _, name in sorted(starts, key=lambda s: s[1])] == sorted(expected), failure
    for (start, name), (end, _) in zip(starts, starts[1:] + [(len(failure["msg"]), "")]):
        item = failure["msg"][start:end]
        assert all(fragment in item for fragment in expected[name]), (name, item)
    assert mirror.lfs_downloads(MODELS_PREFIX) == []
    assert state(CACHE) == before
    for name in ("extra-size", "extra-norev", "extra-norepo", "extra-down"):
        assert docker_exec(CACHE, "test", "-e", f"{ROOT_PATH}/{name}", check=False).returncode != 0


def test_an_unmanaged_directory_is_never_overwritten_unless_asked(lab, converged):
    # No proof category: a directory someone made by hand is host state, neither bad input nor a
    # failure injected while the role runs.
    extra = lab.extra("extra-manual")
    docker_exec(CACHE, "sh", "-c", f"mkdir -p {ROOT_PATH}/extra-manual && echo mine > {ROOT_PATH}/extra-manual/notes")
    run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[extra])})
    assert run.rc != 0, run
    assert changed(run, CACHE) == 0, run  # stopped in preflight
    assert f"not managed by chatfleet (a manual clone?): {ROOT_PATH}/extra-manual." in run.flat, run
    assert docker_exec(CACHE, "cat", f"{ROOT_PATH}/extra-manual/notes").stdout == "mine\n"

    run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[extra]),
                                                        "models_replace_unmanaged": True})
    assert run.rc == 0, run
    kept = docker_exec(CACHE, "sh", "-c", f"cat {STORE}/extra-manual/unmanaged-*/notes").stdout
    assert kept == "mine\n"
    assert link_target(CACHE, "extra-manual") == f"{STORE}/extra-manual/{lab.revision('tiny-gpt2')}"


def test_a_hugging_face_mirror_layout_works(lab, converged):
    """<mirror>/<org>/<name> without .git (models_repo_suffix ""), LFS at <url>.git/info/lfs."""
    extra = lab.extra("extra-hf")
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE, extra_vars={
            "models_manifest": lab.manifest(extra=[extra]), "models_mirror_url": f"{MIRROR_URL}/hf",
            "models_repo_suffix": ""})
    assert run.rc == 0, run
    assert mirror.paths("/hf/lab/tiny-gpt2/info/refs")
    assert mirror.lfs_downloads(MODELS_PREFIX)
    for path, oid in lfs_files(lab, "tiny-gpt2").items():
        assert sha256(CACHE, f"{ROOT_PATH}/extra-hf/{path}") == oid, path
