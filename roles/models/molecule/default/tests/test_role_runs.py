"""Run the models role again against the scenario's nodes with other inputs."""
from __future__ import annotations

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


@pytest.fixture
def converged(lab):
    """Whatever a test did, leave both nodes as converge left them (v1 everywhere, nothing extra)."""
    yield
    for node in (CACHE, NODE):
        docker_exec(node, "sh", "-c", f"rm -rf {ROOT_PATH}/extra-* {STORE}/extra-*", check=False)
    run = run_role("models", hosts=f"{CACHE}:{NODE}", extra_vars={"models_manifest": lab.manifest()})
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


@pytest.mark.fault
def test_an_interrupted_pull_resumes_without_downloading_finished_objects(lab, converged):
    """The state a pull cut short leaves: staging with the metadata and some objects, no link yet."""
    name = "tiny-gpt2"
    revision = lab.revision(name)
    staging = f"{STORE}/{name}/.staging-{revision}"
    objects = lfs_files(lab, name)
    finished_path = "model.safetensors"
    docker_exec(CACHE, "sh", "-c", f"rm -rf {ROOT_PATH}/{name} {STORE}/{name}")
    docker_exec(CACHE, "sh", "-c",
                f"git init -q {staging} && cd {staging} && git remote add origin {MIRROR_URL}/repository/models/lab/{name}.git"
                f" && git fetch -q origin && GIT_LFS_SKIP_SMUDGE=1 git checkout -q --detach {revision}"
                f" && git lfs fetch --include={finished_path} origin {revision}"
                # ... and was cut after it had hard-linked that object into place.
                f" && ln -f .git/lfs/objects/{objects[finished_path][:2]}/{objects[finished_path][2:4]}/"
                f"{objects[finished_path]} {finished_path}")
    assert docker_exec(CACHE, "test", "-f", f"{staging}/.git/lfs/objects/{objects[finished_path][:2]}/"
                       f"{objects[finished_path][2:4]}/{objects[finished_path]}", check=False).returncode == 0

    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE)
    assert run.rc == 0, run
    downloaded = mirror.lfs_downloads(MODELS_PREFIX)
    assert objects[finished_path] not in downloaded
    assert sorted(downloaded) == sorted(oid for path, oid in objects.items() if path != finished_path)
    for path, oid in objects.items():
        assert sha256(CACHE, f"{ROOT_PATH}/{name}/{path}") == oid, path
    assert docker_exec(CACHE, "test", "-e", staging, check=False).returncode != 0
    leftovers = docker_exec(CACHE, "find", f"{STORE}/{name}/{revision}", "-name", "*.chatfleet-*").stdout
    assert leftovers == ""


def test_a_revision_change_moves_the_model_and_downloads_only_what_changed(lab, converged):
    name = "tiny-gpt2"
    v1, v2 = lfs_files(lab, name, "v1"), lfs_files(lab, name, "v2")
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest({name: "v2"})})
    assert run.rc == 0, run
    assert changed(run, CACHE) == 1, run
    assert link_target(CACHE, name) == f"{STORE}/{name}/{lab.revision(name, 'v2')}"
    changed_objects = sorted(set(v2.values()) - set(v1.values()))
    assert changed_objects, "v2 of the lab model must change some weights"
    assert sorted(mirror.lfs_downloads(MODELS_PREFIX)) == changed_objects
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


@pytest.mark.fault
def test_disk_preflight_fails_before_any_byte_is_pulled(lab, converged):
    extra = lab.extra("extra-huge", size="100T")
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[extra])})
    assert run.rc != 0, run
    assert changed(run, CACHE) == 0, run
    assert "Not enough disk for the models on host models-cache: extra-huge need" in run.flat, run
    assert mirror.paths(MODELS_PREFIX) == []
    assert docker_exec(CACHE, "test", "-e", f"{STORE}/extra-huge", check=False).returncode != 0


@pytest.mark.bad_input
def test_a_wrong_size_in_the_manifest_fails_before_the_download(lab, converged):
    extra = lab.extra("extra-small", size="10K")
    with MirrorRequests() as mirror:
        run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": lab.manifest(extra=[extra])})
    assert run.rc != 0, run
    assert f"model extra-small ({MIRROR_URL}/repository/models/lab/tiny-gpt2.git @ " in run.flat, run
    assert f"holds {lab.size('tiny-gpt2')} bytes but the manifest says 10240" in run.flat, run
    assert mirror.lfs_downloads(MODELS_PREFIX) == []
    assert docker_exec(CACHE, "test", "-e", f"{ROOT_PATH}/extra-small", check=False).returncode != 0


@pytest.mark.parametrize(("case", "change", "fragments"), [
    ("unknown revision", {"revision": "0" * 40},
     ["revision 0000000000000000000000000000000000000000 is not in the repository"]),
    ("missing repository", {"repo": "lab/no-such-model", "revision": "v2"},
     ["fetching the repository failed", "no-such-model.git/", "not found"]),
    ("mirror down", {"url": "http://127.0.0.1:9/repository/models/lab/tiny-gpt2.git", "revision": "v2"},
     ["fetching the repository failed", "Failed to connect to 127.0.0.1 port 9"]),
])
@pytest.mark.bad_input
def test_bad_source_fails_naming_the_model_and_leaves_the_active_revision(lab, converged, case, change, fragments):
    name, active = "tiny-gpt2", lab.revision("tiny-gpt2")
    # Only the active revision stays, so the new pin really has to come from the source.
    docker_exec(CACHE, "sh", "-c", f"cd {STORE}/{name} && ls -A | grep -v '^{active}' | xargs -r rm -rf")
    entries = lab.manifest()
    entries[0].update(change)
    if entries[0]["revision"] == "v2":
        entries[0]["revision"] = lab.revision(name, "v2")
    before = {path: sha256(CACHE, f"{ROOT_PATH}/{name}/{path}") for path in lfs_files(lab, name)}
    run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": entries})
    assert run.rc != 0, run
    assert f"model {name} (" in run.flat, (case, run)
    assert all(fragment in run.flat for fragment in fragments), (case, run)
    assert link_target(CACHE, name) == f"{STORE}/{name}/{active}"
    assert {path: sha256(CACHE, f"{ROOT_PATH}/{name}/{path}") for path in before} == before


@pytest.mark.parametrize(("change", "message"), [
    ({"revision": "main"}, 'revision "main" must be the full 40-hex commit'),
    ({"kind": "chat"}, 'kind "chat" must be one of llm, embedding, tokenizer'),
    ({"size": "huge"}, 'size "huge" must be a positive size'),
    ({"name": "../escape"}, 'name "../escape" must match'),
    ({"name": "tiny-bert-embed"}, 'models_manifest entry "tiny-bert-embed" appears twice'),
    ({"repo": "https://elsewhere/x"}, 'repo "https://elsewhere/x" must be a path on the mirror'),
])
@pytest.mark.bad_input
def test_bad_manifest_stops_in_preflight(lab, change, message):
    entries = lab.manifest()
    entries[0].update(change)
    run = run_role("models", hosts=CACHE, extra_vars={"models_manifest": entries})
    assert run.rc != 0, run
    assert changed(run, CACHE) == 0, run
    assert message in run.flat, run


@pytest.mark.bad_input
def test_a_required_model_missing_from_the_manifest_stops_in_preflight(lab):
    run = run_role("models", hosts=NODE, extra_vars={"models_required": ["tiny-gpt2", "chatglm3-6b-32k"]})
    assert run.rc != 0, run
    assert "chatglm3-6b-32k must be enabled in models_manifest" in run.flat, run


@pytest.mark.fault
def test_an_unmanaged_directory_is_never_overwritten_unless_asked(lab, converged):
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
