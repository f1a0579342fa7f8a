"""Run chatchat again through ansible-playbook against the scenario's nodes, with other inputs.

Tests that change a node put it back as converge left it (current -> the converged release,
one release directory, init_database run once).
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from scenario import A100, CHATCHAT_ROOT, CURRENT, DATA, ENV, FIXTURE, L40, NODES, PYTHON, release_dir
from testlib import ROOT, docker_exec, run_playbook

CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"
GIT_REPO = "/srv/git/Langchain-Chatchat.git"
FIXTURES = ROOT / "molecule" / "fixtures"


def run_chatchat(*options: str, hosts: str = "all", extra_vars: dict | None = None, tasks_from: str | None = None):
    """Apply chatchat as converge.yml does: after gpu_preflight, whose GPU list (gpu_preflight_gpus)
    the role derives the model workers of server_config.py from."""
    step = {"name": "Run chatchat", "ansible.builtin.include_role": {"name": "chatchat"}}
    if tasks_from:
        step["ansible.builtin.include_role"]["tasks_from"] = tasks_from
    play = [{"name": "Apply gpu_preflight and chatchat", "hosts": hosts, "gather_facts": False,
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
    }


def message(result) -> str:
    """The output on one line, with YAML's doubled single quotes undone."""
    return result.flat.replace("''", "'")


def init_runs(node: str, data: str = DATA) -> list[dict]:
    return [json.loads(line) for line in sh(node, f"cat {data}/init_database.double.log").splitlines()]


@pytest.fixture(scope="module")
def converged() -> dict:
    return {node: snapshot(node) for node in NODES}


def restore(node: str, converged_release: str) -> None:
    result = run_chatchat(hosts=node)
    assert result.rc == 0, result
    sh(node, f"find {CHATCHAT_ROOT}/releases -mindepth 1 -maxdepth 1 ! -path {converged_release} -exec rm -rf {{}} +")
    assert sh(node, f"readlink {CURRENT}") == converged_release


@pytest.mark.idempotence
def test_second_run_changes_nothing(converged):
    result = run_chatchat()
    assert result.rc == 0, result
    assert result.changed == 0, result.recap
    for node in NODES:
        assert snapshot(node) == converged[node]
        assert len(init_runs(node)) == 1


@pytest.mark.check_mode
def test_check_mode_on_the_converged_hosts_changes_nothing(converged):
    result = run_chatchat("--check", "--diff")
    assert result.rc == 0, result
    assert result.changed == 0, result.recap
    for node in NODES:
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


@pytest.mark.fault
def test_checksum_mismatch_fails_before_unpacking(converged):
    bad = "0" * 64
    result = run_chatchat(hosts=L40, extra_vars={"chatchat_source_sha256": bad})
    assert result.rc != 0
    assert "did not match" in message(result), result
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]
    assert sh(L40, f"ls -d {release_dir('0.2.8', bad)} {CHATCHAT_ROOT}/releases/.staging-*", check=False) == ""


@pytest.mark.parametrize("models", [["qwen-7b"], ["tiny-gpt2", "Qwen-14B-Chat"]])
@pytest.mark.bad_input
def test_llm_without_model_path_fails_naming_the_variables(converged, models):
    result = run_chatchat(hosts=L40, extra_vars={"chatchat_llm_models": models})
    assert result.rc != 0
    missing = models[-1]
    assert f"chatchat_llm_models names '{missing}', which is not a key of chatchat_model_path.llm_model" in message(result)
    assert f"add '{missing}: <path" in message(result)
    assert L40 in result.flat
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]


@pytest.mark.parametrize("name", ["知识库", "1kb", "kb-docs"])
@pytest.mark.bad_input
def test_knowledge_base_name_that_milvus_rejects_fails(converged, name):
    result = run_chatchat(hosts=L40, extra_vars={"chatchat_knowledge_bases": ["samples", name]})
    assert result.rc != 0
    assert f"Knowledge base name '{name}' in chatchat_knowledge_bases" in message(result), result
    assert "ASCII letters, digits and underscores" in result.flat
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]


@pytest.mark.bad_input
def test_missing_service_account_fails_when_the_role_may_not_create_it(converged):
    result = run_chatchat(hosts=L40, extra_vars={"chatchat_create_user": False, "chatchat_user": "svc_absent"})
    assert result.rc != 0
    assert "chatchat_create_user is false, but chatchat_user ('svc_absent'" in message(result), result
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]


@pytest.mark.parametrize("worker, text", [
    ({"infer_turbo": "vllm", "num_gpus": 2, "tensor_parallel_size": 2}, "at most the host's GPU count (1"),
    ({"infer_turbo": "vllm", "num_gpus": 1, "tensor_parallel_size": 2}, "both must be the same whole number"),
    ({"infer_turbo": "vllm", "num_gpus": 1}, "must set both num_gpus and tensor_parallel_size"),
])
@pytest.mark.bad_input
def test_model_worker_gpus_are_checked_against_the_host(converged, worker, text):
    # converge.yml runs gpu_preflight first: the L40 node has one GPU.
    result = run_playbook(CONVERGE, "--limit", L40, extra_vars={"chatchat_fschat_model_workers_default": worker})
    assert result.rc != 0
    assert text in message(result), result
    assert result.recap[L40]["changed"] == 0, result.recap
    assert snapshot(L40) == converged[L40]


def test_eight_gpus_pass_on_the_a100_node(converged):
    worker = {"infer_turbo": "vllm", "num_gpus": 8, "tensor_parallel_size": 8}
    result = run_playbook(CONVERGE, "--limit", A100, "--check", "--diff",
                          extra_vars={"chatchat_fschat_model_workers_default": worker})
    assert result.rc == 0, result
    assert '+        "tensor_parallel_size": 8,' in result.output
    assert snapshot(A100) == converged[A100]


@pytest.mark.bad_input
def test_a_gpu_held_by_another_process_fails_preflight_naming_it(converged):
    # The A100 node replays a recording of one A100 80GB with 77852 MiB held by python3 (pid 2471,
    # no process of this node): vLLM, told to take 0.95 of the card, would fail at load.
    profile = "/usr/share/nvidia-smi-double"
    sh(A100, f"cp -a {profile} /root/nvidia-smi-double.saved")
    try:
        for name in ("nvidia-smi.txt", "query-gpu.csv"):
            subprocess.run(["docker", "cp", str(FIXTURES / "gpu" / "recordings" / "a100x1" / name), f"{A100}:{profile}/{name}"],
                           check=True)
        play = [{"name": "Preflight", "hosts": A100, "gather_facts": False, "tasks": [
            {"name": "Read the GPUs", "ansible.builtin.include_role": {"name": "gpu_preflight", "tasks_from": "preflight.yml"}},
            {"name": "Check Chatchat", "ansible.builtin.include_role": {"name": "chatchat", "tasks_from": "preflight.yml"}}]}]
        with tempfile.TemporaryDirectory(prefix="molecule-play-") as tmp:
            playbook = Path(tmp) / "play.yml"
            playbook.write_text(json.dumps(play))
            # The GPU's own worker, as vLLM (the lab's overrides make its workers plain CPU workers).
            result = run_playbook(playbook, extra_vars={"chatchat_vllm_workers": [], "chatchat_vllm_overrides": {}})
    finally:
        sh(A100, f"rm -rf {profile} && mv /root/nvidia-smi-double.saved {profile}")
    assert result.rc != 0, result
    failure = message(result)
    for text in (f"Host {A100}", "GPU 0", "77852 MiB", "python3 (pid 2471", "gpu_memory_utilization"):
        assert text in failure, (text, result)
    assert result.recap[A100]["changed"] == 0, result.recap
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
        assert len(init_runs(L40)) == 1

        # Back to the converged release, with the mirror out of reach: nothing is downloaded,
        # only the link changes.
        rollback = run_chatchat(hosts=L40,
                            extra_vars={"chatchat_source_url": "http://127.0.0.1:9/unreachable.tar.gz"})
        assert rollback.rc == 0, rollback
        assert rollback.recap[L40]["changed"] == 1, rollback
        assert "Point current at the release" in rollback.output
        assert sh(L40, f"readlink {CURRENT}") == converged_release
        assert sh(L40, f"ls -A {CHATCHAT_ROOT}/releases").split() == sorted(
            [converged_release.rsplit("/", 1)[1], newer.rsplit("/", 1)[1]])

        # Keeping one release removes the other one, never the active one.
        prune = run_chatchat(hosts=L40, extra_vars={"chatchat_keep_releases": 1})
        assert prune.rc == 0, prune
        assert prune.recap[L40]["changed"] == 1, prune
        assert sh(L40, f"ls -A {CHATCHAT_ROOT}/releases") == converged_release.rsplit("/", 1)[1]
        assert snapshot(L40) == converged[L40]
    finally:
        restore(L40, converged_release)


@pytest.fixture()
def git_mirror(converged_release):
    """A bare git repository on the L40 node holding the fixture tree, tagged v0.2.8."""
    docker_exec(L40, "rm", "-rf", "/srv/git", "/srv/chatchat-src")
    docker_exec(L40, "mkdir", "-p", "/srv/git")
    subprocess.run(["docker", "cp", str(FIXTURE), f"{L40}:/srv/chatchat-src"], check=True, capture_output=True)
    sh(L40, "cd /srv/chatchat-src && git init -q && git add -A && "
            "git -c user.name=fixture -c user.email=fixture@example.invalid commit -q -m fixture && "
            f"git tag v0.2.8 && git clone -q --bare /srv/chatchat-src {GIT_REPO}")
    commit = sh(L40, f"git --git-dir={GIT_REPO} rev-parse v0.2.8^{{commit}}")
    yield commit
    restore(L40, converged_release)
    docker_exec(L40, "rm", "-rf", "/srv/git", "/srv/chatchat-src")


@pytest.mark.fault
def test_git_source_is_checked_against_the_pinned_commit(converged, converged_release, git_mirror):
    git_vars = {"chatchat_source_method": "git", "chatchat_git_url": f"file://{GIT_REPO}",
                "chatchat_git_ref": "v0.2.8", "chatchat_git_commit": git_mirror}
    deployed = release_dir("0.2.8", git_mirror)
    result = run_chatchat(hosts=L40, extra_vars=git_vars)
    assert result.rc == 0, result
    assert sh(L40, f"readlink {CURRENT}") == deployed
    origin = json.loads(sh(L40, f"cat {deployed}/.chatfleet-release.json"))
    assert (origin["method"], origin["git_commit"]) == ("git", git_mirror)
    assert sh(L40, f"cd {CURRENT} && {PYTHON} -c 'import configs; print(configs.DEFAULT_VS_TYPE)'") == "milvus"
    assert len(init_runs(L40)) == 1

    wrong = "1" * 40
    before = sh(L40, f"ls -A {CHATCHAT_ROOT}/releases")
    mismatch = run_chatchat(hosts=L40, extra_vars={**git_vars, "chatchat_git_commit": wrong})
    assert mismatch.rc != 0
    assert f"is commit {git_mirror}, not the pinned chatchat_git_commit {wrong}" in message(mismatch), mismatch
    assert sh(L40, f"ls -A {CHATCHAT_ROOT}/releases") == before
    assert sh(L40, f"readlink {CURRENT}") == deployed


def test_recreate_vs_runs_once_per_data_dir(converged_release):
    scratch = "/var/lib/chatchat-recreate"
    extra = {"chatchat_data_dir": scratch, "chatchat_init_database_mode": "recreate-vs",
             "chatchat_knowledge_bases": ["samples", "faq_zh"]}
    try:
        first = run_chatchat(hosts=L40, extra_vars=extra)
        assert first.rc == 0, first
        runs = init_runs(L40, scratch)
        assert len(runs) == 1
        assert runs[0]["argv"] == ["--recreate-vs"]
        assert runs[0]["knowledge_bases"] == ["faq_zh", "samples"]
        assert runs[0]["vs_type"] == "milvus"
        assert json.loads(sh(L40, f"cat {scratch}/.init_database.done"))["mode"] == "recreate-vs"

        again = run_chatchat(hosts=L40, extra_vars=extra)
        assert again.rc == 0, again
        assert again.recap[L40]["changed"] == 0, again.recap
        assert len(init_runs(L40, scratch)) == 1
        assert len(init_runs(L40)) == 1
    finally:
        restore(L40, converged_release)
        docker_exec(L40, "rm", "-rf", scratch)
