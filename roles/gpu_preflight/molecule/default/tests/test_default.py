"""gpu_preflight on nodes replaying recorded nvidia-smi output (the nvidia-smi double).

gpu-preflight-l40 replays l40x1 (1× NVIDIA L40), gpu-preflight-a100 replays a100x8
(8× NVIDIA A100-SXM4-80GB); both driver 535.129.03 / CUDA 12.2.
The bad-input tests run the role again (testlib) on one converged node with bad settings
and check it fails with a clear message and leaves the fact file alone.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
from testlib import ROOT, PlaybookRun, docker_exec, run_playbook, run_role

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"
FACT_FILE = "/etc/ansible/facts.d/gpu.fact"
DOUBLE_DIR = "/usr/share/nvidia-smi-double"
CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"

EXPECTED = {
    "gpu-preflight-l40": {"count": 1, "name": "NVIDIA L40", "model": "l40", "memory": 46068, "profile": "l40x1"},
    "gpu-preflight-a100": {"count": 8, "name": "NVIDIA A100-SXM4-80GB", "model": "a100", "memory": 81920, "profile": "a100x8"},
}


def _fact(host) -> dict:
    fact_file = host.file(FACT_FILE)
    assert fact_file.exists and fact_file.is_file
    return json.loads(fact_file.content_string)


# Right after the converge, before any test changes a node: molecule's own idempotence step, as a
# marked test (every scenario proves its idempotence in one, counted in the proof report).
@pytest.mark.idempotence
def test_a_second_converge_changes_nothing() -> None:
    run = run_playbook(CONVERGE)
    assert run.rc == 0 and run.changed == 0, run
    assert set(EXPECTED) <= set(run.recap), run


@pytest.mark.security
def test_fact_file_mode(host) -> None:
    fact_file = host.file(FACT_FILE)
    assert fact_file.user == "root"
    assert fact_file.mode == 0o644


def test_fact_file_matches_gpus(host) -> None:
    expected = EXPECTED[host.backend.get_hostname()]
    fact = _fact(host)
    assert fact["present"] is True
    assert fact["gpu_count"] == expected["count"]
    assert len(fact["gpus"]) == expected["count"]
    assert fact["gpu_model"] == expected["model"]
    assert fact["gpu_memory_mib"] == expected["memory"]
    assert fact["driver_version"] == "535.129.03"
    assert fact["cuda_version"] == "12.2"
    assert {gpu["name"] for gpu in fact["gpus"]} == {expected["name"]}
    assert [gpu["index"] for gpu in fact["gpus"]] == list(range(expected["count"]))


def test_fact_file_agrees_with_nvidia_smi_on_the_node(host) -> None:
    """The fact file lists exactly the UUIDs and bus ids nvidia-smi reports on the node."""
    query = host.run(
        "nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id --format=csv,noheader,nounits"
    )
    assert query.rc == 0
    rows = [line.split(", ") for line in query.stdout.splitlines() if line.strip()]
    fact = _fact(host)
    assert [gpu["uuid"] for gpu in fact["gpus"]] == [row[2] for row in rows]
    assert [gpu["pci_bus_id"] for gpu in fact["gpus"]] == [row[5] for row in rows]


def test_local_fact_is_readable_by_setup(host) -> None:
    local = host.ansible("ansible.builtin.setup", "filter=ansible_local", check=False)
    gpu = local["ansible_facts"]["ansible_local"]["gpu"]
    assert gpu["gpu_count"] == EXPECTED[host.backend.get_hostname()]["count"]


# --- Bad inputs: run the role again on one converged node -------------------------------------------
# Each rule is unit-tested case by case (tests/unit/plugins/filter/test_gpu_preflight.py); these two prove the
# wiring of its two paths (the settings before the probe, the GPUs after it): the run stops before changing
# the host and the failed task's message names the setting and the host.


def _fact_state(node: str) -> str:
    return docker_exec(node, "sh", "-c", f"sha256sum {FACT_FILE} && stat -c %Y {FACT_FILE}").stdout


def _assert_failed(run: PlaybookRun, host: str, *expected: str) -> None:
    assert run.rc != 0, run
    assert run.changed == 0, run
    message = run.failure(host)["msg"]
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"


@pytest.mark.bad_input
def test_cuda_minimum_not_a_version_fails() -> None:
    node = "gpu-preflight-a100"
    before = _fact_state(node)
    run = run_role("gpu_preflight", hosts=node, extra_vars={"gpu_preflight_min_cuda_version": "eleven"})
    _assert_failed(run, node, f"host {node}: gpu_preflight_min_cuda_version must be a dotted numeric version", '"eleven"')
    assert run.failure(node)["task"].endswith("Check the gpu_preflight settings")
    assert _fact_state(node) == before


@pytest.mark.bad_input
def test_driver_minimum_above_host_fails() -> None:
    node = "gpu-preflight-a100"
    before = _fact_state(node)
    run = run_role("gpu_preflight", hosts=node, extra_vars={"gpu_preflight_min_driver_version": "545.23.08"})
    _assert_failed(run, node, f"host {node} has NVIDIA driver 535.129.03, older than gpu_preflight_min_driver_version 545.23.08")
    assert _fact_state(node) == before


def test_missing_nvidia_smi_fails() -> None:
    node = "gpu-preflight-a100"
    before = _fact_state(node)
    run = run_role("gpu_preflight", hosts=node, extra_vars={"gpu_preflight_nvidia_smi_path": "/opt/none/nvidia-smi"})
    _assert_failed(run, node, f"host {node}: nvidia-smi was not found", "the NVIDIA driver is not installed")
    assert _fact_state(node) == before


def _swap_recording(node: str, profile: str) -> Iterator[str]:
    """Point the node's nvidia-smi double at another recording (docker cp), restore it afterwards."""
    before = _fact_state(node)
    docker_exec(node, "mv", DOUBLE_DIR, DOUBLE_DIR + ".saved")
    try:
        subprocess.run(["docker", "cp", str(RECORDINGS / profile), f"{node}:{DOUBLE_DIR}"], check=True)
        yield before
    finally:
        docker_exec(node, "rm", "-rf", DOUBLE_DIR)
        docker_exec(node, "mv", DOUBLE_DIR + ".saved", DOUBLE_DIR)
    restored = docker_exec(node, "nvidia-smi", check=False)
    assert restored.returncode == 0 and EXPECTED[node]["name"] in restored.stdout


@pytest.fixture()
def l40_on_no_driver() -> Iterator[str]:
    yield from _swap_recording("gpu-preflight-l40", "no-driver")


def test_driver_failure_fails(l40_on_no_driver: str) -> None:
    node = "gpu-preflight-l40"
    probe = docker_exec(node, "nvidia-smi", check=False)
    assert probe.returncode == 9
    run = run_role("gpu_preflight", hosts=node)
    _assert_failed(
        run, node,
        f'host {node}: "nvidia-smi" failed with exit code 9',
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
    )
    assert _fact_state(node) == l40_on_no_driver


def test_driver_failure_passes_when_gpu_not_required(l40_on_no_driver: str) -> None:
    """gpu_preflight_required=false: the host passes with no GPUs; check mode so nothing is written."""
    node = "gpu-preflight-l40"
    run = run_role("gpu_preflight", "--check", hosts=node, extra_vars={"gpu_preflight_required": False})
    assert run.rc == 0, run
    assert _fact_state(node) == l40_on_no_driver
