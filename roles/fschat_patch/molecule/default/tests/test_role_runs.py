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


def failure(run: PlaybookRun) -> str:
    """The output from the first failed task on (its message and the recap), on one line."""
    _, failed, rest = run.flat.partition("FAILED! =>")
    assert failed, run
    return rest


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


def test_a_version_fixed_upstream_is_reported_and_left_unchanged(host, patched):
    # The installed 0.2.33 stands in for 0.2.35/0.2.36, which hold the same buggy line but fixed the
    # cause elsewhere: from fschat_patch_fixed_since on, the version decides whatever the text says.
    reinstall_fschat(host)
    path = worker_path(host)
    before = host.file(path).sha256sum
    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_fixed_since": "0.2.33"})
    assert run.rc == 0, run
    assert changed(run) == 0, run
    assert f"fschat 0.2.33 in {ENV} is not affected (fixed upstream since 0.2.33)" in run.flat, run
    assert host.file(path).sha256sum == before
    assert BUGGY in host.file(path).content_string


def test_inspect_entry_point_changes_nothing(host, patched):
    reinstall_fschat(host)
    path = worker_path(host)
    before = host.file(path).sha256sum
    run = run_role("fschat_patch", hosts=NODE, tasks_from="inspect.yml")
    assert run.rc == 0, run
    assert changed(run) == 0, run
    assert host.file(path).sha256sum == before


def append_comment_to_the_buggy_line(host, path: str) -> None:
    """The buggy call in another form: the known text plus a trailing comment (not the whole line)."""
    host.check_output(f"sed -i 's/^\\( *stop=list(stop),\\)$/\\1  # x/' {path}")
    assert "            stop=list(stop),  # x\n" in host.file(path).content_string


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.fault
def test_the_buggy_call_in_another_form_stops_before_the_backup(host, patched, required):
    # The check and the replacement match the same whole line: a line with a trailing comment is
    # unknown to the patch, so nothing is written, not even the backup.
    reinstall_fschat(host)
    path = worker_path(host)
    host.check_output(f"rm -f {path}.orig-0.2.33")
    append_comment_to_the_buggy_line(host, path)
    before = host.file(path).sha256sum
    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_required": required})
    if required:
        assert run.rc != 0, run
        message = failure(run)
        assert f"{path} of fschat 0.2.33 in {ENV} on host {NODE} is unknown to the patch" in message, run
        assert "only in another form on line 103" in message, run
        assert "Refusing to patch; nothing was changed" in message, run
        assert "fschat==0.2.33" in message and "fschat_patch_required" in message, run
    else:
        assert run.rc == 0, run
        assert "only in another form on line 103" in run.flat, run
        assert "fschat_patch_required is false: left unchanged" in run.flat, run
    assert changed(run) == 0, run
    assert host.file(path).sha256sum == before
    assert not host.file(f"{path}.orig-0.2.33").exists


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
