"""Run fschat_patch again through ansible-playbook against the molecule node with other inputs."""
from __future__ import annotations

import pytest
from fschat_worker import BUGGY, ENV, FIXED, PYTHON, worker_path
from testlib import PYPI_INDEX_URL, PlaybookRun, run_role

NODE = "fschat-patch-node"


def changed(run: PlaybookRun) -> int:
    """Tasks the run changed on the node; a run that never reached the node's recap fails the test."""
    assert NODE in run.recap, run
    return run.recap[NODE]["changed"]


def reinstall_fschat(host) -> None:
    host.check_output(f"{ENV}/bin/pip install -q --force-reinstall --no-deps --index-url {PYPI_INDEX_URL} fschat==0.2.33")


@pytest.fixture
def patched(host):
    """Leave the node as converge left it, whatever the test did to the file."""
    yield
    reinstall_fschat(host)
    run = run_role("fschat_patch", hosts=NODE)
    assert run.rc == 0, run
    assert FIXED in host.file(worker_path(host)).content_string


@pytest.mark.idempotence
def test_second_run_changes_nothing(host):
    run = run_role("fschat_patch", hosts=NODE)
    assert run.rc == 0, run
    assert changed(run) == 0, run


@pytest.mark.check_mode
def test_check_mode_on_the_converged_host_changes_nothing(host):
    run = run_role("fschat_patch", "--check", hosts=NODE)
    assert run.rc == 0, run
    assert changed(run) == 0, run


def test_reinstall_restores_the_bug_and_the_role_patches_it_again(host, patched):
    path = worker_path(host)
    backup_before = host.file(f"{path}.orig-0.2.33").sha256sum
    reinstall_fschat(host)
    assert BUGGY in host.file(path).content_string
    assert host.file(f"{path}.orig-0.2.33").exists  # not in fschat's RECORD: pip leaves it
    buggy_sum = host.file(path).sha256sum

    check = run_role("fschat_patch", "--check", hosts=NODE)
    assert check.rc == 0, check
    assert changed(check) == 1, check
    assert host.file(path).sha256sum == buggy_sum  # check mode left the file alone

    run = run_role("fschat_patch", hosts=NODE)
    assert run.rc == 0, run
    assert changed(run) == 1, run  # the file; the backup already exists
    content = host.file(path).content_string
    assert FIXED in content
    assert BUGGY not in content
    assert host.file(f"{path}.orig-0.2.33").sha256sum == backup_before
    assert host.run(f"{PYTHON} -m py_compile {path}").rc == 0

    again = run_role("fschat_patch", hosts=NODE)
    assert changed(again) == 0, again


def test_version_not_affected_is_reported_and_left_unchanged(host, patched):
    # The installed 0.2.33 stands in for a version without the bug (e.g. 0.2.35, which has
    # the same text but fixed the cause elsewhere): declare only 0.2.34 affected, fixed since 0.2.33.
    reinstall_fschat(host)
    path = worker_path(host)
    before = host.file(path).sha256sum
    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_affected_versions": ["0.2.34"],
                                                             "fschat_patch_fixed_since": "0.2.33"})
    assert run.rc == 0, run
    assert changed(run) == 0, run
    assert f"fschat 0.2.33 in {ENV} is not affected" in run.flat, run
    assert host.file(path).sha256sum == before
    assert BUGGY in host.file(path).content_string


@pytest.mark.parametrize("required", [True, False])
def test_version_unknown_to_the_patch_fails_when_required(host, patched, required):
    # 0.2.33 neither declared affected nor at/after fixed_since stands in for e.g. 0.2.32.
    reinstall_fschat(host)
    path = worker_path(host)
    before = host.file(path).sha256sum
    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_affected_versions": ["0.2.34"],
                                                             "fschat_patch_required": required})
    assert f"fschat 0.2.33 in {ENV} on host {NODE} is unknown to the patch" in run.flat, run
    if required:
        assert run.rc != 0, run
        assert "fschat_patch_affected_versions" in run.flat and "fschat_patch_required" in run.flat, run
    else:
        assert run.rc == 0, run
    assert changed(run) == 0, run
    assert host.file(path).sha256sum == before


@pytest.mark.fault
def test_affected_file_with_neither_text_fails_loudly(host, patched):
    path = worker_path(host)
    host.check_output(f"sed -i 's/stop=\\[i for i in stop if i != \"\"\\],/stop=sorted(stop),/' {path}")
    content = host.file(path).content_string
    assert BUGGY not in content and FIXED not in content
    before = host.file(path).sha256sum
    run = run_role("fschat_patch", hosts=NODE)
    assert run.rc != 0, run
    assert "contains neither the buggy text" in run.flat, run
    assert "refusing to patch" in run.flat, run
    assert changed(run) == 0, run
    assert host.file(path).sha256sum == before


@pytest.mark.parametrize("env_path", ["/opt/no-such-env", ""])
@pytest.mark.bad_input
def test_missing_env_fails_naming_the_variable(host, env_path):
    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_env_path": env_path})
    assert run.rc != 0, run
    assert "fschat_patch_env_path" in run.flat, run
    assert NODE in run.flat, run
    assert changed(run) == 0, run


def test_env_without_fschat(host):
    empty = "/opt/chatchat/envs/empty"
    host.check_output(f"python3 -m venv --without-pip {empty}")
    try:
        required = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_env_path": empty})
        assert required.rc != 0, required
        assert f"fschat is not installed in {empty} on host {NODE}" in required.flat, required

        optional = run_role("fschat_patch", hosts=NODE,
                            extra_vars={"fschat_patch_env_path": empty, "fschat_patch_required": False})
        assert optional.rc == 0, optional
        assert changed(optional) == 0, optional
        assert "nothing to patch" in optional.flat, optional
    finally:
        host.run(f"rm -rf {empty}")
