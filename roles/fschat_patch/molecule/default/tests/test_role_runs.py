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
    """Leave the node as converge left it, whatever the test did to the file (nothing to do when the
    test itself ended with the file and its backup as converge left them)."""
    path = worker_path(host)
    converged = (host.file(path).sha256sum, host.file(f"{path}.orig-0.2.33").sha256sum)
    yield
    backup = host.file(f"{path}.orig-0.2.33")
    if backup.exists and (host.file(path).sha256sum, backup.sha256sum) == converged:
        return
    reinstall_fschat(host)
    run = run_role("fschat_patch", hosts=NODE)
    assert run.rc == 0, run
    assert FIXED in host.file(path).content_string


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
    """On one reinstalled (buggy) file: the inspect entry point and a version fixed upstream leave it
    alone, check mode reports the patch without writing, a run patches it, the next changes nothing."""
    path = worker_path(host)
    backup_before = host.file(f"{path}.orig-0.2.33").sha256sum
    reinstall_fschat(host)
    assert BUGGY in host.file(path).content_string
    assert host.file(f"{path}.orig-0.2.33").exists  # not in fschat's RECORD: pip leaves it
    buggy_sum = host.file(path).sha256sum

    inspect = run_role("fschat_patch", hosts=NODE, tasks_from="inspect.yml")
    assert inspect.rc == 0, inspect
    assert changed(inspect) == 0, inspect
    assert host.file(path).sha256sum == buggy_sum

    # The installed 0.2.33 stands in for 0.2.35/0.2.36, which hold the same buggy line but fixed the
    # cause elsewhere: from fschat_patch_fixed_since on, the version decides whatever the text says.
    upstream = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_fixed_since": "0.2.33"})
    assert upstream.rc == 0, upstream
    assert changed(upstream) == 0, upstream
    assert f"fschat 0.2.33 in {ENV} is not affected (fixed upstream since 0.2.33)" in upstream.flat, upstream
    assert host.file(path).sha256sum == buggy_sum

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


def append_comment_to_the_buggy_line(host, path: str) -> None:
    """The buggy call in another form: the known text plus a trailing comment (not the whole line)."""
    host.check_output(f"sed -i 's/^\\( *stop=list(stop),\\)$/\\1  # x/' {path}")
    assert "            stop=list(stop),  # x\n" in host.file(path).content_string


def test_the_buggy_call_in_another_form_stops_before_the_backup(host, patched):
    # No proof category: an unexpected file on the host, neither bad input nor a failure injected
    # while the role runs. The check and the replacement match the same whole line: a line with a trailing comment is
    # unknown to the patch, so nothing is written, not even the backup (required: fails; not
    # required: reported and left alone).
    reinstall_fschat(host)
    path = worker_path(host)
    host.check_output(f"rm -f {path}.orig-0.2.33")
    append_comment_to_the_buggy_line(host, path)
    before = host.file(path).sha256sum

    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_required": True})
    assert run.rc != 0, run
    message = run.failure(NODE)["msg"]
    assert f"{path} of fschat 0.2.33 in {ENV} on host {NODE} is unknown to the patch" in message, message
    assert "only in another form on line 103" in message, message
    assert "Refusing to patch; nothing was changed" in message, message
    assert "fschat==0.2.33" in message and "fschat_patch_required" in message, message
    assert changed(run) == 0, run
    assert host.file(path).sha256sum == before
    assert not host.file(f"{path}.orig-0.2.33").exists

    optional = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_required": False})
    assert optional.rc == 0, optional
    assert "only in another form on line 103" in optional.flat, optional
    assert "fschat_patch_required is false: left unchanged" in optional.flat, optional
    assert changed(optional) == 0, optional
    assert host.file(path).sha256sum == before
    assert not host.file(f"{path}.orig-0.2.33").exists


# The settings rules are unit-tested case by case (tests/unit/plugins/filter/test_fschat_patch_settings.py).
# Two validation paths, one case each: a setting's form (before the node is looked at) and the node's
# state (no python under the prefix). The run stops before any change, the message names setting and host.
@pytest.mark.parametrize(("env_path", "expected"), [
    ("", f"fschat_patch_env_path must be the absolute prefix of the Python environment that holds fschat"
         f" (the directory with bin/python), e.g. /opt/chatchat/envs/0.2.8; got '' for host {NODE}"),
    ("/opt/no-such-env", f"/opt/no-such-env/bin/python does not exist or is not executable on host {NODE}:"
                         " set fschat_patch_env_path (now '/opt/no-such-env')"),
])
@pytest.mark.bad_input
def test_missing_env_fails_naming_the_variable(host, env_path, expected):
    path = worker_path(host)
    before = host.check_output(f"sha256sum {path} {path}.orig-0.2.33")
    run = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_env_path": env_path})
    assert run.rc != 0, run
    message = run.failure(NODE)["msg"]
    assert expected in message, message
    assert changed(run) == 0, run
    assert host.check_output(f"sha256sum {path} {path}.orig-0.2.33") == before


def test_env_without_fschat(host):
    empty = "/opt/chatchat/envs/empty"
    host.check_output(f"python3 -m venv --without-pip {empty}")
    try:
        required = run_role("fschat_patch", hosts=NODE, extra_vars={"fschat_patch_env_path": empty})
        assert required.rc != 0, required
        assert f"fschat is not installed in {empty} on host {NODE}" in required.failure(NODE)["msg"], required

        optional = run_role("fschat_patch", hosts=NODE,
                            extra_vars={"fschat_patch_env_path": empty, "fschat_patch_required": False})
        assert optional.rc == 0, optional
        assert changed(optional) == 0, optional
        assert "nothing to patch" in optional.flat, optional
    finally:
        host.run(f"rm -rf {empty}")
