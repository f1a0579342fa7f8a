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

CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"
RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"
FACT_FILE = "/etc/ansible/facts.d/gpu.fact"
DOUBLE_DIR = "/usr/share/nvidia-smi-double"

EXPECTED = {
    "gpu-preflight-l40": {"count": 1, "name": "NVIDIA L40", "model": "l40", "memory": 46068, "profile": "l40x1"},
    "gpu-preflight-a100": {"count": 8, "name": "NVIDIA A100-SXM4-80GB", "model": "a100", "memory": 81920, "profile": "a100x8"},
}


def _fact(host) -> dict:
    fact_file = host.file(FACT_FILE)
    assert fact_file.exists and fact_file.is_file
    return json.loads(fact_file.content_string)


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


@pytest.fixture(autouse=True)
def _json_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reruns print one JSON document (the json callback): failure messages are read exactly, not as wrapped YAML."""
    monkeypatch.setenv("ANSIBLE_STDOUT_CALLBACK", "ansible.builtin.json")


def _fact_state(node: str) -> str:
    return docker_exec(node, "sh", "-c", f"sha256sum {FACT_FILE} && stat -c %Y {FACT_FILE}").stdout


def _failure_messages(run: PlaybookRun) -> list[str]:
    """The msg of every failed task result in the json callback's output (stdout, before any stderr)."""
    document, _ = json.JSONDecoder().raw_decode(run.output, run.output.index("{"))
    messages = []
    for play in document["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("failed"):
                    messages.append(str(result.get("msg", "")))
    return messages


@pytest.fixture(scope="module")
def a100_fact_state() -> Iterator[str]:
    before = _fact_state("gpu-preflight-a100")
    yield before
    assert _fact_state("gpu-preflight-a100") == before, "a failed run changed the fact file"


def _assert_failed(run: PlaybookRun, *expected: str) -> None:
    assert run.rc != 0, run
    messages = _failure_messages(run)
    assert len(messages) == 1, messages
    for text in expected:
        assert text in messages[0], f"{text!r} not in {messages[0]!r}"


@pytest.mark.bad_input
def test_cuda_minimum_not_a_version_fails(a100_fact_state: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100", extra_vars={"gpu_preflight_min_cuda_version": "eleven"})
    _assert_failed(run, "host gpu-preflight-a100: gpu_preflight_min_cuda_version must be a dotted numeric version", '"eleven"')
    assert _fact_state("gpu-preflight-a100") == a100_fact_state


@pytest.mark.bad_input
def test_driver_minimum_above_host_fails(a100_fact_state: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100", extra_vars={"gpu_preflight_min_driver_version": "545.23.08"})
    _assert_failed(run, "host gpu-preflight-a100 has NVIDIA driver 535.129.03, older than gpu_preflight_min_driver_version 545.23.08")
    assert _fact_state("gpu-preflight-a100") == a100_fact_state


def test_cuda_minimum_compared_as_version(a100_fact_state: str) -> None:
    # As strings "12.2" < "12.10" would pass; as versions 12.2 < 12.10 fails.
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100", extra_vars={"gpu_preflight_min_cuda_version": "12.10"})
    _assert_failed(run, "host gpu-preflight-a100 supports CUDA 12.2", "older than gpu_preflight_min_cuda_version 12.10")


@pytest.mark.bad_input
def test_gpu_count_minimum_fails(a100_fact_state: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100", extra_vars={"gpu_preflight_min_gpu_count": 16})
    _assert_failed(run, "host gpu-preflight-a100 has 8× NVIDIA A100-SXM4-80GB, fewer than gpu_preflight_min_gpu_count 16")


@pytest.mark.bad_input
def test_a100_host_expected_to_be_l40_fails(a100_fact_state: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100", extra_vars={"gpu_preflight_expected_model": "l40"})
    _assert_failed(
        run,
        "host gpu-preflight-a100 is claimed for group l40 by gpu_preflight_expected_model (its groups: a100)",
        "but its GPUs are 8× NVIDIA A100-SXM4-80GB",
    )
    assert _fact_state("gpu-preflight-a100") == a100_fact_state


def _extra_inventory(tmp_path: Path, groups: dict[str, dict[str, dict | None]]) -> Path:
    """An inventory file added to molecule's: more group members (hosts with their vars)."""
    extra = tmp_path / "extra_groups.yml"
    extra.write_text(json.dumps({"all": {"children": {g: {"hosts": hosts} for g, hosts in groups.items()}}}))
    return extra


@pytest.mark.bad_input
def test_a100_host_in_group_l40_fails(tmp_path: Path, a100_fact_state: str) -> None:
    """The a100 node under a second inventory name that is in group l40 only: the expected model comes from the group."""
    alias = "gpu-preflight-a100-in-l40"
    node_vars = {"ansible_connection": "community.docker.docker", "ansible_host": "gpu-preflight-a100"}
    inventory = _extra_inventory(tmp_path, {"l40": {alias: node_vars}})
    run = run_playbook(CONVERGE, "--limit", alias, extra_inventory=inventory,
                       extra_vars={"gpu_preflight_expected_model": ""})
    _assert_failed(run, f"host {alias} is in group l40 but its GPUs are 8× NVIDIA A100-SXM4-80GB")


@pytest.mark.bad_input
def test_host_in_l40_and_a100_fails(tmp_path: Path, a100_fact_state: str) -> None:
    inventory = _extra_inventory(tmp_path, {"l40": {"gpu-preflight-a100": None}})
    run = run_playbook(CONVERGE, "--limit", "gpu-preflight-a100", extra_inventory=inventory,
                       extra_vars={"gpu_preflight_expected_model": ""})
    _assert_failed(run, "host gpu-preflight-a100 is in groups a100 and l40 but a host can carry only one GPU family")


def test_missing_nvidia_smi_fails(a100_fact_state: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100",
                   extra_vars={"gpu_preflight_nvidia_smi_path": "/opt/none/nvidia-smi"})
    _assert_failed(run, "host gpu-preflight-a100: nvidia-smi was not found", "the NVIDIA driver is not installed")
    assert _fact_state("gpu-preflight-a100") == a100_fact_state


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


@pytest.fixture()
def a100_on_old_driver() -> Iterator[str]:
    yield from _swap_recording("gpu-preflight-a100", "old-driver")


def test_old_driver_fails(a100_on_old_driver: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100")
    _assert_failed(run, "host gpu-preflight-a100 has NVIDIA driver 470.223.02, older than gpu_preflight_min_driver_version 525.60.13")
    assert _fact_state("gpu-preflight-a100") == a100_on_old_driver


def test_old_cuda_fails_with_driver_minimum_lowered(a100_on_old_driver: str) -> None:
    run = run_role("gpu_preflight", hosts="gpu-preflight-a100", extra_vars={"gpu_preflight_min_driver_version": "470"})
    _assert_failed(run, "host gpu-preflight-a100 supports CUDA 11.4 (driver 470.223.02), older than gpu_preflight_min_cuda_version 11.7")
    assert _fact_state("gpu-preflight-a100") == a100_on_old_driver


def test_driver_failure_fails(l40_on_no_driver: str) -> None:
    node = "gpu-preflight-l40"
    probe = docker_exec(node, "nvidia-smi", check=False)
    assert probe.returncode == 9
    run = run_role("gpu_preflight", hosts=node)
    _assert_failed(
        run,
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
