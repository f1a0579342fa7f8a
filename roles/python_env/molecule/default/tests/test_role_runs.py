"""Run python_env again through ansible-playbook against the molecule node with other inputs."""
from __future__ import annotations

import json

import pytest
from faultproxy import FaultProxy
from testlib import MIRROR_URL, PYPI_INDEX_URL, docker_exec, run_role, task_results

NODE = "python-env-node"
ENVS = "/opt/chatchat/envs"
ENV = f"{ENVS}/0.2.8"
PYTHON = f"{ENV}/bin/python"

# path -> (mtime, size) of everything under the env's site-packages/*.dist-info and the env's own files
SNAPSHOT = r"""
import glob, json, os, sys
root = sys.argv[1]
paths = glob.glob(os.path.join(root, "lib", "python*", "site-packages", "*.dist-info")) + glob.glob(os.path.join(root, "*"))
print(json.dumps({p: [os.stat(p).st_mtime_ns, os.stat(p).st_size] for p in sorted(paths)}))
"""


def snapshot(host, prefix: str = ENV) -> dict:
    return json.loads(host.check_output(f"python3 -c '{SNAPSHOT}' {prefix}"))


def tree(host, path: str) -> str:
    """Every file under path with its mtime and size: any change shows."""
    return host.check_output(f"find {path} -printf '%p %T@ %s %m\\n' | sort")


def freeze(host, prefix: str) -> list[str]:
    return host.check_output(f"{prefix}/bin/python -m pip freeze --all").splitlines()


@pytest.fixture
def restore(host):
    """Put back the pins file as converge left it (for tests that give the role other pins and fail or
    only check): the env is then exactly what its stamp records, which the next run proves (changed=0
    on the fast path) without another full check."""
    pins = f"{ENV}/chatfleet-requirements.txt"
    docker_exec(NODE, "cp", "-p", pins, f"{pins}.saved")
    yield
    docker_exec(NODE, "mv", f"{pins}.saved", pins)
    assert host.file(pins).content_string.count("\n") == 4
    assert not host.file(f"{ENV}/bin/uv").exists


@pytest.mark.idempotence
def test_second_run_changes_and_installs_nothing(host):
    """The stamp (chatfleet-installed.json) matches: no dry run, no pip check, no import check, so the
    mirror is not even asked. (Read from the run's task results, not from the mirror's log: the
    scenarios beside this one install packages through the same mirror.)"""
    before = snapshot(host)
    assert any(p.endswith("fschat-0.2.33.dist-info") for p in before)
    stamp = json.loads(host.file(f"{ENV}/chatfleet-installed.json").content_string)
    assert "fschat==0.2.33" in stamp["distributions"] and len(stamp["digest"]) == 64
    result = run_role("python_env")
    assert result.rc == 0, result
    assert result.changed == 0, result
    assert task_results(result, "Read the env's install inputs and its stamp") == ["ok"], result
    for skipped in ("Ask pip what it would install (dry run)", "Install the requirements with pip",
                    "Check the installed packages' dependencies (pip check)", "Import the checked modules"):
        assert task_results(result, skipped) == ["skipping"], (skipped, result)
    assert snapshot(host) == before


@pytest.mark.check_mode
def test_check_mode_on_the_converged_host_changes_nothing(host):
    before = snapshot(host)
    result = run_role("python_env", "--check")
    assert result.rc == 0, result
    assert result.changed == 0, result
    assert snapshot(host) == before


@pytest.mark.check_mode
def test_check_mode_on_a_new_prefix_reports_the_change_and_creates_nothing(host):
    prefix = f"{ENVS}/check-only"
    result = run_role("python_env", "--check", extra_vars={"python_env_prefix": prefix})
    assert result.rc == 0, result
    assert result.changed >= 1, result
    assert f"Check mode: {prefix} does not exist yet" in result.flat
    assert not host.file(prefix).exists


def test_check_mode_reports_a_package_that_would_be_installed(host, restore):
    # The pins file is written first in a real run; here it already names uv, so the dry run can tell.
    extra = {"python_env_packages": ["fschat==0.2.33", "pymilvus>=2.3.3,<2.4", "uv==0.13.9"]}
    docker_exec(NODE, "sh", "-c", f"echo uv==0.13.9 >> {ENV}/chatfleet-requirements.txt")
    before = snapshot(host)
    result = run_role("python_env", "--check", extra_vars=extra)
    assert result.rc == 0, result
    assert result.changed == 1, result
    assert "would install into /opt/chatchat/envs/0.2.8: uv==0.13.9" in result.flat, result
    assert snapshot(host) == before
    assert not host.file(f"{ENV}/bin/uv").exists


def test_check_mode_with_a_requirement_file_not_there_yet(host):
    # In a real run an earlier role (unpacking a new Chatchat release) puts it there first.
    missing = "/srv/chatchat-release-next/requirements.txt"
    before = snapshot(host)
    result = run_role("python_env", "--check", extra_vars={"python_env_requirement_files": [missing]})
    assert result.rc == 0, result
    assert f"files that are not on host {NODE} yet: {missing}" in result.flat, result
    assert result.changed >= 1, result
    assert snapshot(host) == before


@pytest.mark.bad_input
def test_wrong_system_interpreter_fails_before_creating_anything(host):
    prefix = f"{ENVS}/wants-3.10"
    result = run_role("python_env", extra_vars={"python_env_prefix": prefix, "python_env_python_version": "3.10.12"})
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert "python_env_system_python /usr/bin/python3 on host python-env-node is Python 3.11." in message, message
    assert "python_env_python_version wants 3.10.12; nothing was created" in message, message
    assert 'Set python_env_python_version to "3.11"' in message
    assert "python_env_provider \"conda\"" in message
    assert result.changed == 0, result
    assert not host.file(prefix).exists


@pytest.mark.bad_input
def test_existing_env_of_another_version_fails_and_is_left_untouched(host):
    prefix = f"{ENVS}/older"
    host.check_output(f"python3 -m venv --without-pip {prefix} && echo keep > {prefix}/operator-notes.txt")
    try:
        before = tree(host, prefix)
        result = run_role("python_env", extra_vars={"python_env_prefix": prefix, "python_env_python_version": "3.10.12"})
        assert result.rc != 0
        message = result.failure(NODE)["msg"]
        assert f"The environment {prefix} on host {NODE} has Python 3.11." in message, message
        assert "python_env_python_version wants 3.10.12" in message
        assert "left untouched" in message
        assert result.changed == 0, result
        assert tree(host, prefix) == before
    finally:
        host.run(f"rm -rf {prefix}")


@pytest.mark.bad_input
def test_prefix_with_other_content_is_refused(host):
    prefix = f"{ENVS}/not-an-env"
    host.check_output(f"mkdir -p {prefix} && echo data > {prefix}/data.txt")
    try:
        before = tree(host, prefix)
        result = run_role("python_env", extra_vars={"python_env_prefix": prefix})
        assert result.rc != 0
        assert f"python_env_prefix {prefix} on host {NODE} is not empty but holds no bin/python (data.txt)" in \
            result.failure(NODE)["msg"]
        assert result.changed == 0, result
        assert tree(host, prefix) == before
    finally:
        host.run(f"rm -rf {prefix}")


# The settings rules are unit-tested case by case (tests/unit/plugins/filter/test_python_env.py): one
# setting's form here, and a requirement file missing on the node (a check of the node's state).
@pytest.mark.parametrize(("extra", "variable"), [
    ({"python_env_index_url": ""}, "python_env_index_url is required: the mirror's PyPI simple index"),
    ({"python_env_requirement_files": ["/srv/chatchat-release/requirements-missing.txt"]},
     "python_env_requirement_files names files that are not on host python-env-node: "
     "/srv/chatchat-release/requirements-missing.txt"),
    # The edit rules are unit-tested (tests/unit/plugins/filter/test_requirement_edits.py); here, read
    # against the file on the node.
    ({"python_env_requirement_edits": {"drop": ["vllm"]}},
     "python_env_requirement_edits names vllm, which none of the requirement files"
     " (/srv/chatchat-release/requirements.txt) on host python-env-node holds"),
])
@pytest.mark.bad_input
def test_bad_input_fails_before_any_change(host, extra, variable):
    before = snapshot(host)
    result = run_role("python_env", extra_vars=extra)
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert variable in message, message
    assert NODE in message, message
    assert result.changed == 0, result
    assert snapshot(host) == before


def test_only_the_configured_index_is_used(host, restore):
    # The node's /etc/pip.conf (nexus_mirror, prepare) names the working mirror as index-url AND
    # as extra-index-url; python_env_index_url points at a repository the mirror does not have.
    # uv is on the mirror, so the install can succeed only if pip read pip.conf.
    assert "extra-index-url" in host.file("/etc/pip.conf").content_string
    bad_index = PYPI_INDEX_URL.replace("/pypi-proxy/", "/no-such-repository/")
    result = run_role("python_env", extra_vars={
        "python_env_index_url": bad_index,
        "python_env_packages": ["fschat==0.2.33", "pymilvus>=2.3.3,<2.4", "uv==0.13.9"]})
    assert result.rc != 0
    assert "No matching distribution found for uv==0.13.9" in result.flat, result
    assert not host.file(f"{ENV}/bin/uv").exists


# A module name that does not import is bad input (nothing fails while the role runs), found only
# by the import checks on the node: other import checks give another digest, so the checks run.
@pytest.mark.bad_input
def test_failing_import_check_names_the_module(host):
    before = snapshot(host)
    stamp = host.file(f"{ENV}/chatfleet-installed.json").content_string
    result = run_role("python_env", extra_vars={"python_env_import_checks": ["fastchat", "chatfleet_no_such_module"]})
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert f"python_env_import_checks: these modules do not import with {PYTHON} on host {NODE}" in message, message
    assert "chatfleet_no_such_module (ModuleNotFoundError" in message
    assert "fastchat (" not in message
    assert result.changed == 0, result
    assert snapshot(host) == before
    assert host.file(f"{ENV}/chatfleet-installed.json").content_string == stamp


def test_a_package_removed_by_hand_is_put_back_by_the_next_run(host):
    """Drift: a requirement uninstalled on the node. The installed distributions are part of the
    install stamp, so the next run (not a later one) finds the env changed and installs it again."""
    before = freeze(host, ENV)
    assert "SQLAlchemy==2.0.19" in before
    docker_exec(NODE, PYTHON, "-m", "pip", "uninstall", "--yes", "--quiet", "SQLAlchemy")
    assert "SQLAlchemy==2.0.19" not in freeze(host, ENV)
    run = run_role("python_env")
    assert run.rc == 0, run
    assert task_results(run, "Install the requirements with pip") == ["changed"], run
    assert freeze(host, ENV) == before


def test_requirement_edits_install_the_edited_set_in_place_of_the_files(host):
    """A second requirement file holds a line no mirror can serve (as a GPU build is for a CPU host):
    dropped by the edits, it never reaches pip, and the install passes; a replaced line is installed
    as the edit writes it. The files on the node stay as they were."""
    gpu_file = "/srv/chatchat-release/requirements_gpu.txt"
    gpu_lines = "chatfleet-gpu-only-build==0.2.2\nnumpy>=1.20\n"
    edited_file = f"{ENV}/chatfleet-edited-requirements.txt"
    stamp = f"{ENV}/chatfleet-installed.json"
    docker_exec(NODE, "sh", "-c", f"printf '{gpu_lines}' > {gpu_file} && cp -p {stamp} {stamp}.saved")
    settings = {"python_env_requirement_files": ["/srv/chatchat-release/requirements.txt", gpu_file],
                "python_env_requirement_edits": {"drop": ["chatfleet-gpu-only-build"],
                                                 "replace": {"numpy": "numpy~=1.24.4"}}}
    try:
        run = run_role("python_env", extra_vars=settings)
        assert run.rc == 0, run
        assert task_results(run, "Write the project's pins, the constraints and the edited requirement set into the "
                                 "environment") == ["changed"], run
        edited = host.file(edited_file).content_string.splitlines()
        assert "# dropped: chatfleet-gpu-only-build==0.2.2" in edited and "chatfleet-gpu-only-build==0.2.2" not in edited
        assert "# replaced: numpy>=1.20" in edited and "numpy~=1.24.4" in edited
        assert "langchain==0.0.344" in edited  # the release's own file, as it is
        assert host.file(gpu_file).content_string == gpu_lines
        again = run_role("python_env", extra_vars=settings)
        assert again.rc == 0 and again.changed == 0, again
    finally:
        # The env was not changed (every requirement was already met): its stamp as converge left it.
        docker_exec(NODE, "sh", "-c", f"rm -f {gpu_file} {edited_file} && mv {stamp}.saved {stamp}")


def test_uv_installer_gives_the_same_packages(host):
    prefix = f"{ENVS}/uv"
    try:
        result = run_role("python_env", extra_vars={"python_env_prefix": prefix, "python_env_installer": "uv"})
        assert result.rc == 0, result
        assert "Install the requirements with uv" in result.output
        assert host.check_output(f"{prefix}/bin/uv --version").startswith("uv 0.13.9")
        with_pip = freeze(host, ENV)
        with_uv = [line for line in freeze(host, prefix) if not line.startswith("uv==")]
        assert with_uv == with_pip
        assert host.run(f"{prefix}/bin/python -c 'import pymilvus, langchain, fastchat'").rc == 0
        # Bytecode written at install time, as pip does: the services cannot write it into the env.
        for env in (ENV, prefix):
            assert host.run(f"ls {env}/lib/python3*/site-packages/fastchat/__pycache__/__init__.*.pyc").rc == 0, env

        again = run_role("python_env", extra_vars={"python_env_prefix": prefix, "python_env_installer": "uv"})
        assert again.rc == 0, again
        assert again.changed == 0, again
    finally:
        host.run(f"rm -rf {prefix}")


WITH_UV = ["fschat==0.2.33", "pymilvus>=2.3.3,<2.4", "uv==0.13.9"]


def _records(host) -> tuple[str, str]:
    """The freeze record and the stamp: what the last run that passed the checks left."""
    return (host.file(f"{ENV}/chatfleet-freeze.txt").content_string,
            host.file(f"{ENV}/chatfleet-installed.json").content_string)


def _packages_unchanged(host, before: dict, records: tuple[str, str]) -> None:
    assert host.run(f"{PYTHON} -c 'import pymilvus, langchain, fastchat'").rc == 0
    assert {p: v for p, v in snapshot(host).items() if ".dist-info" in p} == \
        {p: v for p, v in before.items() if ".dist-info" in p}
    assert not host.file(f"{ENV}/bin/uv").exists
    assert _records(host) == records


def _recovers(host) -> None:
    """The next runs with the inventory's input: the first puts the pins file back, the second finds
    nothing at all to do."""
    first = run_role("python_env")
    assert first.rc == 0, first
    second = run_role("python_env")
    assert second.rc == 0 and second.changed == 0, second


# Two faults of the mirror in a row, on the same converged env, then one recovery (the runs that
# recover are the same after either fault).
@pytest.mark.fault
def test_mirror_down_or_lost_mid_download_fails_and_keeps_the_env_and_the_next_run_recovers(host):
    """1. Nothing listens at the index: pip's retries end in a failure that says so; nothing installed.
    2. The index answers, then the connection drops 1 MiB into the uv wheel (faultproxy).
    The uv pin makes the installer contact the mirror (the env's stamp would otherwise skip it)."""
    docker_exec(NODE, "rm", "-rf", "/root/.cache/pip")  # pip would take the wheel from its cache
    before, records = snapshot(host), _records(host)
    down = PYPI_INDEX_URL.replace(MIRROR_URL, "http://127.0.0.1:9")
    result = run_role("python_env", extra_vars={"python_env_index_url": down, "python_env_packages": WITH_UV})
    assert result.rc != 0
    assert "Connection refused" in result.flat and "No matching distribution found for uv==0.13.9" in result.flat, result
    _packages_unchanged(host, before, records)

    docker_exec(NODE, "rm", "-rf", "/root/.cache/pip")
    with FaultProxy(MIRROR_URL, break_files="/uv-0.13.9-", keep_bytes=1 << 20) as proxy:
        result = run_role("python_env", extra_vars={
            "python_env_index_url": PYPI_INDEX_URL.replace(MIRROR_URL, proxy.url), "python_env_packages": WITH_UV})
    assert proxy.broken, f"the fault was not injected: {proxy.passed}"
    assert result.rc != 0
    assert "uv" in result.flat and ("IncompleteRead" in result.flat or "Connection broken" in result.flat
                                    or "hash" in result.flat.lower()), result
    _packages_unchanged(host, before, records)
    _recovers(host)
