"""Run fschat_patch again through ansible-playbook against the molecule node with other inputs."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

MIRROR = os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/")
INDEX = f"{MIRROR}/repository/pypi-proxy/simple/"
NODE = "fschat-patch-node"
ENV = "/opt/chatchat/envs/0.2.8"
PYTHON = f"{ENV}/bin/python"
BUGGY = "stop=list(stop),"
FIXED = 'stop=[i for i in stop if i != ""],'
FIND = (
    "import importlib.util, os; "
    "print(os.path.join(importlib.util.find_spec('fastchat').submodule_search_locations[0], 'serve', 'vllm_worker.py'))"
)
PLAYBOOK = """\
- name: Apply fschat_patch
  hosts: {node}
  gather_facts: false
  roles:
    - role: fschat_patch
"""


def run_role(tmp_path: Path, extra_vars: dict, *options: str) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(node=NODE))
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(extra_vars))
    return subprocess.run(
        ["ansible-playbook", *options, "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", f"@{varfile}", str(playbook)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600, check=False,
    )


def flat(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).split())  # the yaml callback wraps long lines


def worker_path(host) -> str:
    return host.check_output(f'{PYTHON} -c "{FIND}"')


def reinstall_fschat(host) -> None:
    host.check_output(f"{ENV}/bin/pip install -q --force-reinstall --no-deps --index-url {INDEX} fschat==0.2.33")


@pytest.fixture
def patched(host, tmp_path):
    """Leave the node as converge left it, whatever the test did to the file."""
    yield
    reinstall_fschat(host)
    result = run_role(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert FIXED in host.file(worker_path(host)).content_string


def test_second_run_changes_nothing(host, tmp_path):
    result = run_role(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout


def test_check_mode_on_the_converged_host_changes_nothing(host, tmp_path):
    result = run_role(tmp_path, {}, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout


def test_reinstall_restores_the_bug_and_the_role_patches_it_again(host, tmp_path, patched):
    path = worker_path(host)
    backup_before = host.file(f"{path}.orig-0.2.33").sha256sum
    reinstall_fschat(host)
    assert BUGGY in host.file(path).content_string
    assert host.file(f"{path}.orig-0.2.33").exists  # not in fschat's RECORD: pip leaves it
    buggy_sum = host.file(path).sha256sum

    check = run_role(tmp_path, {}, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "changed=1" in check.stdout, check.stdout
    assert host.file(path).sha256sum == buggy_sum  # check mode left the file alone

    result = run_role(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=1" in result.stdout, result.stdout  # the file; the backup already exists
    content = host.file(path).content_string
    assert FIXED in content
    assert BUGGY not in content
    assert host.file(f"{path}.orig-0.2.33").sha256sum == backup_before
    assert host.run(f"{PYTHON} -m py_compile {path}").rc == 0

    again = run_role(tmp_path, {})
    assert "changed=0" in again.stdout, again.stdout


def test_version_not_affected_is_reported_and_left_unchanged(host, tmp_path, patched):
    # The installed 0.2.33 stands in for a version without the bug (e.g. 0.2.35, which has
    # the same text but fixed the cause elsewhere): declare only 0.2.34 affected.
    reinstall_fschat(host)
    path = worker_path(host)
    before = host.file(path).sha256sum
    result = run_role(tmp_path, {"fschat_patch_affected_versions": ["0.2.34"]})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout
    assert f"fschat 0.2.33 in {ENV} is not affected" in flat(result), flat(result)
    assert host.file(path).sha256sum == before
    assert BUGGY in host.file(path).content_string


def test_affected_file_with_neither_text_fails_loudly(host, tmp_path, patched):
    path = worker_path(host)
    host.check_output(f"sed -i 's/stop=\\[i for i in stop if i != \"\"\\],/stop=sorted(stop),/' {path}")
    content = host.file(path).content_string
    assert BUGGY not in content and FIXED not in content
    before = host.file(path).sha256sum
    result = run_role(tmp_path, {})
    assert result.returncode != 0
    assert "contains neither the buggy text" in flat(result), flat(result)
    assert "refusing to patch" in flat(result)
    assert "changed=0" in result.stdout
    assert host.file(path).sha256sum == before


@pytest.mark.parametrize("env_path", ["/opt/no-such-env", ""])
def test_missing_env_fails_naming_the_variable(host, tmp_path, env_path):
    result = run_role(tmp_path, {"fschat_patch_env_path": env_path})
    assert result.returncode != 0
    message = flat(result)
    assert "fschat_patch_env_path" in message, message
    assert NODE in message, message
    assert "changed=0" in result.stdout


def test_env_without_fschat(host, tmp_path):
    empty = "/opt/chatchat/envs/empty"
    host.check_output(f"python3 -m venv --without-pip {empty}")
    try:
        required = run_role(tmp_path, {"fschat_patch_env_path": empty})
        assert required.returncode != 0
        assert f"fschat is not installed in {empty} on host {NODE}" in flat(required), flat(required)

        optional = run_role(tmp_path, {"fschat_patch_env_path": empty, "fschat_patch_required": False})
        assert optional.returncode == 0, optional.stdout + optional.stderr
        assert "changed=0" in optional.stdout, optional.stdout
        assert "nothing to patch" in flat(optional)
    finally:
        host.run(f"rm -rf {empty}")
