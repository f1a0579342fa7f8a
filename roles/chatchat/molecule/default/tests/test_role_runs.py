"""Run chatchat again through ansible-playbook against the scenario's nodes, with other inputs.

Tests that change a node put it back as converge left it (current -> the converged release,
one release directory, init_database run once).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from scenario import A100, CHATCHAT_ROOT, CURRENT, DATA, ENV, L40, NODES, PYTHON, TARBALL, release_dir
from testlib import RAW_URL, ROOT, docker_exec, run_playbook

CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"
GIT_REPO = "/srv/git/Langchain-Chatchat.git"


def run_chatchat(*options: str, hosts: str = "all", extra_vars: dict | None = None, tasks_from: str | None = None):
    """Apply chatchat as converge.yml does: after gpu_preflight, whose GPU list (gpu_preflight_gpus)
    the role derives the model workers of server_config.py from."""
    step = {"name": "Run chatchat", "ansible.builtin.include_role": {"name": "chatchat"}}
    if tasks_from:
        step["ansible.builtin.include_role"]["tasks_from"] = tasks_from
    play = [{"name": "Apply gpu_preflight and chatchat", "hosts": hosts, "gather_facts": False,
             "vars_files": [str(ROOT / "playbooks" / "vars" / "wiring.yml")],
             "tasks": [{"name": "Record the GPUs", "ansible.builtin.include_role": {"name": "gpu_preflight"}}, step]}]
    with tempfile.TemporaryDirectory(prefix="molecule-play-") as tmp:
        playbook = Path(tmp) / "play.yml"
        playbook.write_text(json.dumps(play))  # JSON is YAML
        return run_playbook(playbook, *options, extra_vars=extra_vars)


def sh(node: str, command: str, check: bool = True) -> str:
    return docker_exec(node, "sh", "-c", command, check=check).stdout.strip()


def snapshot(node: str) -> dict:
    """What a failed run must leave unchanged: releases, link, configs, env, data."""
    return {
        "releases": sh(node, f"ls -A {CHATCHAT_ROOT}/releases"),
        "cache": sh(node, f"ls -A {CHATCHAT_ROOT}/cache"),
        "current": sh(node, f"readlink {CURRENT}"),
        "configs": sh(node, f"cd {CURRENT}/configs && sha256sum *.py"),
        "env": sh(node, f"ls -la --time-style=full-iso {ENV} {ENV}/bin"),
        "data": sh(node, f"ls -laR --time-style=full-iso {DATA}"),
        "init_marker": sh(node, f"cat {DATA}/.init_database.done"),
    }


@pytest.fixture(scope="module")
def converged() -> dict:
    return {node: snapshot(node) for node in NODES}


def restore(node: str, converged_release: str, converged_state: dict) -> None:
    """Put `node` back as converge left it, undoing only what the tests change: current points at
    the converged release again and every other release goes. The role runs again only when that
    is not enough (a test that failed half-way)."""
    sh(node, f"ln -sfn {converged_release} {CURRENT}.restore && mv -T {CURRENT}.restore {CURRENT}")
    sh(node, f"find {CHATCHAT_ROOT}/releases -mindepth 1 -maxdepth 1 ! -path {converged_release} -exec rm -rf {{}} +")
    if snapshot(node) != converged_state:
        result = run_chatchat(hosts=node)
        assert result.rc == 0, result
        sh(node, f"find {CHATCHAT_ROOT}/releases -mindepth 1 -maxdepth 1 ! -path {converged_release} -exec rm -rf {{}} +")
    assert snapshot(node) == converged_state


@pytest.mark.idempotence
def test_second_run_changes_nothing(converged):
    result = run_chatchat()
    assert result.rc == 0, result
    assert result.changed == 0, result.recap
    for node in NODES:
        # The snapshot holds the init_database marker: the script did not run again.
        assert snapshot(node) == converged[node]


@pytest.mark.check_mode
def test_check_mode_on_the_converged_hosts_changes_nothing(converged):
    result = run_chatchat("--check", "--diff")
    assert result.rc == 0, result
    assert result.changed == 0, result.recap
    for node in NODES:
        assert snapshot(node) == converged[node]


def test_a_config_line_changed_by_hand_shows_in_check_mode_and_the_next_run_repairs_it(converged):
    """Drift: one line of a rendered config edited on the node. Check mode reports that change (its
    diff shows the line) and leaves it; the next run, not a later one, writes the config back."""
    node, config = L40, f"{CURRENT}/configs/model_config.py"
    sh(node, f"sed -i 's/^TEMPERATURE = .*/TEMPERATURE = 0.99/' {config}")
    assert "TEMPERATURE = 0.99" in sh(node, f"cat {config}").splitlines()
    checked = run_chatchat("--check", "--diff", hosts=node)
    assert checked.rc == 0 and checked.changed == 1, checked.recap
    assert "-TEMPERATURE = 0.99" in checked.output, checked
    assert "TEMPERATURE = 0.99" in sh(node, f"cat {config}").splitlines()
    repaired = run_chatchat(hosts=node)
    assert repaired.rc == 0 and repaired.changed == 1, repaired.recap
    assert snapshot(node) == converged[node]


@pytest.mark.idempotence
def test_release_entry_point_is_a_no_op_on_a_deployed_release(converged, converged_release):
    result = run_chatchat(tasks_from="release.yml")
    assert result.rc == 0, result
    assert result.changed == 0, result.recap
    # Only fetch and unpack: nothing is configured or activated by this entry point.
    assert "Template configs" not in result.output
    assert "Point current at the release" not in result.output
    assert "Run init_database.py" not in result.output
    for node in NODES:
        assert snapshot(node) == converged[node]


@pytest.mark.bad_input
def test_bad_settings_stop_in_preflight_naming_the_variable_and_host(converged):
    """The preflight path, two ways in: the settings check (filter_plugins/chatchat_settings.py; its
    rules - LLM paths, knowledge base names, worker GPUs - are unit-tested in
    tests/unit/plugins/filter/test_chatchat_settings.py) and the lookup of an account the role may
    not create."""
    result = run_chatchat(hosts=L40, extra_vars={"chatchat_llm_models": ["tiny-gpt2", "qwen-7b"]})
    assert result.rc != 0
    failure = result.failure(L40)
    assert failure["task"].endswith("Check the knowledge bases, the models and their workers"), failure
    assert "chatchat_llm_models names 'qwen-7b', which is not a key of chatchat_model_path.llm_model" in failure["msg"]
    assert f"on host {L40}: add 'qwen-7b: <path" in failure["msg"], failure
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]

    result = run_chatchat(hosts=L40, extra_vars={"chatchat_create_user": False, "chatchat_user": "svc_absent"})
    assert result.rc != 0
    failure = result.failure(L40)
    assert "chatchat_create_user is false, but chatchat_user ('svc_absent'" in failure["msg"], failure
    assert f"does not exist on host {L40}" in failure["msg"], failure
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]


@pytest.mark.bad_input
def test_a_source_that_is_not_the_pinned_one_stops_before_unpacking(converged, git_mirror):
    """The source path: a tarball whose sha256 is not chatchat_source_sha256, and a git ref that
    does not resolve to chatchat_git_commit (read with git ls-remote, before anything changes)."""
    bad = "0" * 64
    result = run_chatchat(hosts=L40, extra_vars={"chatchat_source_sha256": bad})
    assert result.rc != 0
    failure = result.failure(L40)
    assert f"its sha256 is not chatchat_source_sha256 {bad}" in failure["msg"], failure
    assert f"on host {L40}" in failure["msg"] and "did not match" in failure["msg"], failure
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]
    assert sh(L40, f"ls -d {release_dir('0.2.8', bad)} {CHATCHAT_ROOT}/releases/.staging-*", check=False) == ""

    wrong = "1" * 40
    result = run_chatchat(hosts=L40, extra_vars={
        "chatchat_source_method": "git", "chatchat_git_url": f"file://{GIT_REPO}", "chatchat_git_ref": "v0.2.8",
        "chatchat_git_commit": wrong})
    assert result.rc != 0
    failure = result.failure(L40)
    assert f"is commit {git_mirror}, not the pinned chatchat_git_commit {wrong} (host {L40})" in failure["msg"], failure
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]


def test_eight_gpus_pass_on_the_a100_node(converged):
    worker = {"infer_turbo": "vllm", "num_gpus": 8, "tensor_parallel_size": 8}
    result = run_playbook(CONVERGE, "--limit", A100, "--check", "--diff",
                          extra_vars={"chatchat_fschat_model_workers_default": worker})
    assert result.rc == 0, result
    assert '+        "tensor_parallel_size": 8,' in result.output
    assert snapshot(A100) == converged[A100]


def test_new_release_keeps_the_previous_one_and_rollback_is_a_link_change(converged, converged_release):
    sha = sh(L40, f"python3 -c \"import json; print(json.load(open('{converged_release}/.chatfleet-release.json'))['sha256'])\"")
    newer = release_dir("0.2.8.1", sha)
    try:
        deploy = run_chatchat(hosts=L40, extra_vars={"chatchat_version": "0.2.8.1"})
        assert deploy.rc == 0, deploy
        assert sh(L40, f"readlink {CURRENT}") == newer
        assert sh(L40, f"cd {newer}/configs && sha256sum *.py") == converged[L40]["configs"]
        # The previous release is intact, and init_database did not run again.
        assert sh(L40, f"cd {converged_release}/configs && sha256sum *.py") == converged[L40]["configs"]
        assert sh(L40, f"ls {converged_release}/startup.py") == f"{converged_release}/startup.py"
        assert sh(L40, f"cat {DATA}/.init_database.done") == converged[L40]["init_marker"]

        # Back to the converged release, with the mirror out of reach and one release to keep:
        # nothing is downloaded, the link changes, and the other release goes, never the active one.
        rollback = run_chatchat(hosts=L40, extra_vars={
            "chatchat_source_url": "http://127.0.0.1:9/unreachable.tar.gz", "chatchat_keep_releases": 1})
        assert rollback.rc == 0, rollback
        assert rollback.recap[L40]["changed"] == 2, rollback  # the link, the pruned release
        assert "Point current at the release" in rollback.output
        assert sh(L40, f"readlink {CURRENT}") == converged_release
        assert sh(L40, f"ls -A {CHATCHAT_ROOT}/releases") == converged_release.rsplit("/", 1)[1]
        assert snapshot(L40) == converged[L40]
    finally:
        restore(L40, converged_release, converged[L40])


@pytest.fixture()
def git_mirror(converged, converged_release):
    """A bare git repository on the L40 node holding the real v0.2.8 tree (from the mirror's tarball),
    tagged v0.2.8 (a commit of its own: the tarball carries no history)."""
    docker_exec(L40, "rm", "-rf", "/srv/git", "/srv/chatchat-src")
    docker_exec(L40, "mkdir", "-p", "/srv/git", "/srv/chatchat-src")
    fetch = f"import shutil, sys, urllib.request; shutil.copyfileobj(urllib.request.urlopen('{RAW_URL}{TARBALL}'), sys.stdout.buffer)"
    sh(L40, f"python3 -c \"{fetch}\" | tar -xz --strip-components=1 -C /srv/chatchat-src")
    # --force: every file of the tarball is a tracked file upstream, some of them under its .gitignore
    # (configs/__init__.py among them).
    sh(L40, "cd /srv/chatchat-src && git init -q && git add --all --force && "
            "git -c user.name=fixture -c user.email=fixture@example.invalid commit -q -m fixture && "
            f"git tag v0.2.8 && git clone -q --bare /srv/chatchat-src {GIT_REPO}")
    commit = sh(L40, f"git --git-dir={GIT_REPO} rev-parse v0.2.8^{{commit}}")
    yield commit
    restore(L40, converged_release, converged[L40])
    docker_exec(L40, "rm", "-rf", "/srv/git", "/srv/chatchat-src")


def test_git_source_deploys_the_pinned_commit(converged, converged_release, git_mirror):
    """The git method: the pinned commit is checked out and deployed. A ref that is not the pinned
    commit is test_a_source_that_is_not_the_pinned_one_stops_before_unpacking."""
    git_vars = {"chatchat_source_method": "git", "chatchat_git_url": f"file://{GIT_REPO}",
                "chatchat_git_ref": "v0.2.8", "chatchat_git_commit": git_mirror}
    deployed = release_dir("0.2.8", git_mirror)
    result = run_chatchat(hosts=L40, extra_vars=git_vars)
    assert result.rc == 0, result
    assert sh(L40, f"readlink {CURRENT}") == deployed
    origin = json.loads(sh(L40, f"cat {deployed}/.chatfleet-release.json"))
    assert (origin["method"], origin["git_commit"]) == ("git", git_mirror)
    assert sh(L40, f"cd {CURRENT} && {PYTHON} -c 'import configs; print(configs.DEFAULT_VS_TYPE)'") == "milvus"
    # init_database.py did not run again: the marker is the converge's.
    assert sh(L40, f"cat {DATA}/.init_database.done") == converged[L40]["init_marker"]


def test_recreate_vs_runs_once_per_data_dir(converged, converged_release):
    # Not next to DATA: the snapshot lists DATA with ls -a, whose ".." line is /var/lib itself.
    # The real --recreate-vs rebuilds every knowledge base's vector store with the embedding model:
    # FAISS here (this scenario has no Milvus; the whole-site scenario's KBs are in Milvus).
    scratch = "/srv/chatchat-recreate"
    extra = {"chatchat_data_dir": scratch, "chatchat_init_database_mode": "recreate-vs",
             "chatchat_knowledge_bases": ["samples", "faq_zh"], "chatchat_default_vs_type": "faiss"}
    # The runs template the converged release's configs for the scratch data dir: keep them to put back.
    sh(L40, f"rm -rf /root/configs.saved && cp -a {converged_release}/configs /root/configs.saved")
    try:
        first = run_chatchat(hosts=L40, extra_vars=extra)
        assert first.rc == 0, first
        marker = json.loads(sh(L40, f"cat {scratch}/.init_database.done"))
        assert marker["mode"] == "recreate-vs"
        assert marker["command"].endswith("init_database.py --recreate-vs")
        stores = sh(L40, f"cd {scratch}/knowledge_base && ls -d */vector_store/*/index.faiss")
        assert stores.split() == ["faq_zh/vector_store/tiny-bert-embed/index.faiss",
                                  "samples/vector_store/tiny-bert-embed/index.faiss"]

        again = run_chatchat(hosts=L40, extra_vars=extra)
        assert again.rc == 0, again
        # changed=0: the script (a command, always "changed" when it runs) did not run again.
        assert again.recap[L40]["changed"] == 0, again.recap
        assert json.loads(sh(L40, f"cat {scratch}/.init_database.done")) == marker
        assert sh(L40, f"cat {DATA}/.init_database.done") == converged[L40]["init_marker"]
    finally:
        sh(L40, f"cp -a /root/configs.saved/. {converged_release}/configs/ && rm -rf /root/configs.saved")
        docker_exec(L40, "rm", "-rf", scratch)
        restore(L40, converged_release, converged[L40])
