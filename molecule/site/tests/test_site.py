"""The whole site converged on a lab-style fleet: one L40 node, one 8xA100 node."""
from __future__ import annotations

import json
import tempfile

import pytest
from testlib import ROOT, docker_exec, run_playbook

MIRROR = "127.0.0.1:18080"
EXPECTED_GPUS = {"site-l40-1": ("l40", 1), "site-a100-1": ("a100", 8)}


@pytest.fixture()
def node(host):
    return host.backend.get_hostname()


def run_site(*options: str, extra_inventory: str | None = None):
    return run_playbook(ROOT / "site.yml", *options, extra_inventory=extra_inventory)


def test_pip_uses_only_the_mirror(host):
    conf = host.file("/etc/pip.conf")
    assert conf.exists
    assert f"http://{MIRROR}/repository/pypi-proxy/simple/" in conf.content_string
    assert "pypi.org" not in conf.content_string


def test_apt_uses_only_the_mirror(host):
    policy = host.check_output("apt-cache policy")
    sources = {line.split()[1] for line in policy.splitlines() if line.strip().startswith(("100", "500", "990"))
               and "://" in line}
    assert sources, policy
    assert all(MIRROR in src for src in sources), sources


def test_git_lfs_installed_system_wide(host):
    assert host.package("git-lfs").is_installed
    assert "filter.lfs.process" in host.check_output("git config --system --list")


def test_gpu_facts_match_the_group(host, node):
    family, count = EXPECTED_GPUS[node]
    facts = json.loads(host.file("/etc/ansible/facts.d/gpu.fact").content_string)
    assert facts["gpu_count"] == count
    assert facts["gpu_model"] == family


def test_second_run_changes_nothing():
    result = run_site()
    assert result.rc == 0, result
    assert result.changed == 0, result.recap


def test_check_mode_on_converged_fleet_changes_nothing():
    result = run_site("--check", "--diff")
    assert result.rc == 0, result
    assert result.changed == 0, result.recap


BAD_INPUT = [
    (("-e", "mirror_pypi_index_url='not a url'"), "nexus_mirror_pypi_index_url"),
    (("-e", "gpu_preflight_min_cuda_version=eleven"), "gpu_preflight_min_cuda_version"),
]


@pytest.mark.parametrize(("args", "named_variable"), BAD_INPUT)
def test_bad_variable_stops_before_any_change(args, named_variable):
    before = {n: docker_exec(n, "md5sum", "/etc/pip.conf").stdout for n in EXPECTED_GPUS}
    result = run_site(*args)
    assert result.rc != 0
    assert named_variable in result.output
    assert result.changed == 0, result.recap
    assert before == {n: docker_exec(n, "md5sum", "/etc/pip.conf").stdout for n in EXPECTED_GPUS}


def test_host_in_both_gpu_groups_fails_naming_the_host():
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as extra:
        extra.write("all:\n  children:\n    a100:\n      hosts:\n        site-l40-1:\n")
        extra.flush()
        result = run_site(extra_inventory=extra.name)
    assert result.rc != 0
    assert "site-l40-1" in result.output and "a100" in result.output and "l40" in result.output
    assert result.changed == 0, result.recap


def test_gpu_group_without_a_gpu_fails_naming_the_host():
    docker_exec("site-a100-1", "mv", "/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi.away")
    try:
        result = run_site()
    finally:
        docker_exec("site-a100-1", "mv", "/usr/bin/nvidia-smi.away", "/usr/bin/nvidia-smi")
    assert result.rc != 0
    assert "site-a100-1" in result.output and "nvidia-smi" in result.output
    assert result.changed == 0, result.recap
