"""Fleet operations on the converged site, through the chatfleet tool (ansible-runner): status, bad
input, a release rollout whose canary fails its health gate, the same rollout going on while the other
node reboots, the rollout of that node that finishes it, a rollback, check mode after all that, and uninstall then
reinstall of one node.

Runs after test_site.py (file order), on the same three nodes. The nodes share the host's network, so
the test reaches each node's services on 127.0.0.1 directly.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from site_kb import ask_kb
from site_tool import ToolRun, chatfleet, tool_argv
from testlib import ROOT, docker_exec, run_playbook, run_role, wait_booted

OPENAI_PORT = {"site-l40-1": 20000, "site-a100-1": 21000}
NODES = list(OPENAI_PORT)  # the GPU nodes
MILVUS_NODE = "site-milvus-1"


def gpu_nodes_in_rollout_order() -> list[str]:
    """The GPU nodes in the order the GPU play batches them (the inventory's order, as Ansible reads it)."""
    sys.path.insert(0, str(ROOT))
    from chatfleet.inventory import load_fleet
    return load_fleet(str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)).groups["gpu_nodes"]


def chat_tokens(node: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{OPENAI_PORT[node]}/v1/chat/completions",
        data=json.dumps({"model": "tiny-gpt2", "max_tokens": 8, "temperature": 0,
                         "messages": [{"role": "user", "content": "hello"}]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)["usage"]["completion_tokens"]


def main_pids(node: str) -> dict[str, str]:
    units = docker_exec(node, "systemctl", "list-units", "--plain", "--no-legend", "chatchat-*.service").stdout
    names = [line.split()[0] for line in units.splitlines() if line.strip()]
    return {name: docker_exec(node, "systemctl", "show", "-p", "MainPID", "--value", name).stdout.strip()
            for name in names}


def test_status_prints_one_table_and_saves_it_as_json(tmp_path):
    saved = tmp_path / "status.json"
    run = chatfleet(tmp_path, "status", "-e", f"status_report_path={saved}")
    assert run.rc == 0, run
    nodes = {entry["host"]: entry for entry in json.loads(saved.read_text())["nodes"]}
    assert set(nodes) == {*NODES, MILVUS_NODE}
    for node, gpus in (("site-l40-1", (1, "l40")), ("site-a100-1", (8, "a100"))):
        status, health = nodes[node]["status"], nodes[node]["health"]
        assert (status["gpu"]["count"], status["gpu"]["model"]) == gpus
        assert status["gpu"]["driver"] and status["gpu"]["cuda"]
        assert status["release"].startswith("v0.2.8-")
        assert status["fschat"] == {"version": "0.2.33", "patch": "patched"}
        assert re.fullmatch(r"[0-9a-f]{40}", status["models"]["tiny-gpt2"])
        assert status["services"] and set(status["services"].values()) == {"active"}
        assert health["healthy"] and health["completions"]["tiny-gpt2"]["tokens"] > 0, health
    header = next(line for line in run.output.splitlines() if "| gpu" in line)
    assert all(column in header for column in ("host", "driver/cuda", "release", "fschat", "models", "services", "health"))
    assert re.search(r"site-a100-1\s*\|\s*8x a100\s*\|", run.output)
    assert run.report["result"] == "successful" and run.report["hosts"]["site-l40-1"]["health_after"]["healthy"]


# The kernel wait channel of every process running the gate's probe script (the nodes have no procps).
WAIT_CHANNELS_OF_THE_PROBE = (
    "for cmdline in /proc/[0-9]*/cmdline; do "
    "grep -q chatchat-health.py $cmdline 2>/dev/null && cat ${cmdline%/cmdline}/wchan 2>/dev/null && echo; done; true")


@pytest.mark.fault
def test_the_health_gate_probes_again_before_failing_a_node():
    """A unit that is down at the gate's first probe and back before its retries run out passes the
    gate; one that stays down fails it after the retries, naming the unit."""
    node = NODES[0]
    gate = {"chatchat_health_retries": 6, "chatchat_health_retry_delay": 5}
    docker_exec(node, "systemctl", "stop", "chatchat-webui.service")
    try:
        # Back once the gate's probe script sleeps between its probes (the kernel's wait channel of its
        # process): triggered by the probe itself, not by a timer racing Ansible's start.
        with ThreadPoolExecutor(max_workers=1) as pool:
            gating = pool.submit(run_role, "chatchat_health", "-v", hosts=node, extra_vars=gate)  # -v: the probe's stderr
            deadline = time.monotonic() + 300
            while "nanosleep" not in docker_exec(node, "sh", "-c", WAIT_CHANNELS_OF_THE_PROBE, check=False).stdout:
                assert not gating.done() and time.monotonic() < deadline, "the gate never waited between probes"
                time.sleep(0.5)
            docker_exec(node, "systemctl", "start", "chatchat-webui.service")
            run = gating.result()
        assert run.rc == 0 and "not healthy (unit chatchat-webui is inactive); probing again in 5 s" in run.flat, run
        docker_exec(node, "systemctl", "stop", "chatchat-webui.service")
        run = run_role("chatchat_health", hosts=node, extra_vars={**gate, "chatchat_health_retries": 1,
                                                                    "chatchat_health_retry_delay": 1})
        assert run.rc != 0, run
        failure = run.failure(node)["msg"]
        assert "failed its health gate (probes: 2, 1 s apart): unit chatchat-webui is inactive" in failure, failure
    finally:
        docker_exec(node, "systemctl", "start", "chatchat-webui.service", check=False)
    run = run_role("chatchat_health", hosts=node, extra_vars=gate)
    assert run.rc == 0, run


@pytest.mark.bad_input
def test_plain_ansible_refuses_a_rollout_without_a_canary_before_any_change():
    # (The tool refuses the same, and its other bad input, before running anything: tests/unit/chatfleet/test_cli.py.)
    releases = {node: current_release(node) for node in NODES}
    run = run_playbook(ROOT / "playbooks" / "rollout.yml", "-e", '{"rollout_serial": ["100%"]}')
    assert run.rc != 0 and run.changed == 0, run
    assert run.failures and all("rollout_allow_all_at_once" in f["msg"] for f in run.failures), run.failures
    assert {node: current_release(node) for node in NODES} == releases


def current_release(node: str) -> str:
    return docker_exec(node, "readlink", "/opt/chatchat/current").stdout.strip()


@pytest.fixture(scope="module")
def releases_before() -> dict[str, str]:
    """Each GPU node's release before the release rollout tests (first asked by the first of them)."""
    return {node: current_release(node) for node in NODES}


NEW_RELEASE = ("-e", "chatchat_version=0.2.8.1")


@pytest.mark.fault
def test_a_release_rollout_stops_at_a_failing_canary(tmp_path, releases_before):
    """A new release (chatchat_version 0.2.8.1) rolled out while the canary's workers are wedged: the
    rollout stops after the canary, and the other node is untouched and serves."""
    canary, other = gpu_nodes_in_rollout_order()
    # Wedged model workers on the canary: their processes are alive (systemd sees them active) but
    # answer nothing, as a worker on a hung GPU does.
    docker_exec(canary, "systemctl", "kill", "-s", "SIGSTOP", "chatchat-worker-*.service")
    other_pids = main_pids(other)
    try:
        run = chatfleet(tmp_path, "rollout", *NEW_RELEASE,
                        "-e", "chatchat_services_health_timeout=20", "-e", "chatchat_health_completion_timeout=5")
        assert run.rc == 1, run
        report = run.report
        assert report["batches"] == [[canary], [other]]
        assert report["failed_hosts"] == [canary] and report["not_run"] == [other], report
        failure = " ".join(f["msg"] for f in report["hosts"][canary]["failures"])
        assert "chatchat-worker-tiny-gpt2" in failure and "did not answer" in failure, failure
        assert report["hosts"][canary]["health_before"]["healthy"] is False
        assert f"**failed: {canary}**" in (Path(report["artifacts"]) / "report.md").read_text()
        assert "/releases/v0.2.8.1-" in current_release(canary)
        # The node after the canary was never touched: same release, same processes, still answering.
        assert current_release(other) == releases_before[other] and main_pids(other) == other_pids
        assert chat_tokens(other) > 0
        assert docker_exec(MILVUS_NODE, "systemctl", "is-active", "milvus").stdout.strip() == "active"
    finally:
        docker_exec(canary, "systemctl", "kill", "-s", "SIGCONT", "chatchat-worker-*.service", check=False)


def node_contents(node: str) -> dict[str, str]:
    """What a failed run must not lose on a GPU node: the release it serves, the env's packages and
    every model file's digest."""
    return {"current": current_release(node),
            "env": docker_exec(node, "/opt/chatchat/envs/0.2.8/bin/python", "-m", "pip", "freeze", "--all").stdout,
            "models": docker_exec(node, "bash", "-c", "cd /opt/chatchat/models && find . -type f -not -path '*/.git/*' "
                                  "-print0 | sort -z | xargs -0 sha256sum").stdout}


def wait_for_chat(node: str, seconds: int = 300) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return chat_tokens(node)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


@pytest.mark.fault
def test_a_node_rebooting_mid_rollout_fails_the_run_loses_nothing_and_the_next_rollout_finishes(tmp_path):
    """The canary is well again and the rollout goes on to the other node, which goes down (its
    container stops, 1 s to shut down) as soon as the new release starts to change it and boots again
    once the run has ended: the run fails on that node, which comes back at boot serving the release it
    had, with its env and models as they were; the next rollout puts the new release on it."""
    canary, other = gpu_nodes_in_rollout_order()
    before = node_contents(other)
    # The rollout goes on where it stopped: the other node only (all the GPU nodes of this run at once).
    argv = tool_argv(tmp_path, "rollout", *NEW_RELEASE, "--limit", other, "--allow-all-at-once")
    went_down_at = None
    try:
        with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as tool:
            lines = []
            for line in tool.stdout:  # the tool's live lines: "  <host> <outcome> <task> ..."
                lines.append(line)
                if went_down_at is None and line.split()[:2] == [other, "changed"]:
                    went_down_at = line.strip()
                    subprocess.run(["docker", "stop", "--time", "1", other], check=True, capture_output=True)
            tool.wait(timeout=60)
    finally:
        subprocess.run(["docker", "start", other], check=True, capture_output=True)
    run = ToolRun(tool.returncode, "".join(lines), tmp_path / "artifacts")
    assert went_down_at, run  # the node went down while the rollout was changing it
    assert run.rc == 1 and run.report["failed_hosts"] == [other], run
    assert "/releases/v0.2.8.1-" in current_release(canary)

    wait_booted(other)
    assert wait_for_chat(other) > 0  # back at boot through chatchat.target
    assert node_contents(other) == before
    assert docker_exec(MILVUS_NODE, "systemctl", "is-active", "milvus").stdout.strip() == "active"

    # The next rollout of the node that failed (the canary has the release) puts the release on it.
    recovered = chatfleet(tmp_path, "rollout", *NEW_RELEASE, "--limit", other, "--allow-all-at-once")
    assert recovered.rc == 0, recovered
    assert "/releases/v0.2.8.1-" in current_release(other)
    assert recovered.report["hosts"][other]["health_after"]["healthy"], recovered.report["hosts"][other]
    assert "chatchat : Point current at the release" in recovered.report["hosts"][other]["changed_tasks"]
    # The knowledge bases test_site.py filled live outside the releases: the new release answers from them.
    for node in NODES:
        assert ask_kb(node, "--ask-only")["cited"] == ["chatfleet-lab-facts.csv"], node


def test_a_rollback_returns_every_node_to_the_previous_release_and_the_knowledge_bases_answer(tmp_path, releases_before):
    # Both GPU nodes in one batch: the batches are the rollout tests' subject, not this one's.
    back = chatfleet(tmp_path, "rollout", "--rollback", "--serial", "100%", "--allow-all-at-once")
    assert back.rc == 0, back
    assert {node: current_release(node) for node in NODES} == releases_before
    for node in NODES:
        assert "chatchat : Point current at the previous release" in back.report["hosts"][node]["changed_tasks"]
        assert back.report["hosts"][node]["health_after"]["healthy"]
        # The lab inventory's gate makes a knowledge-base round trip (chatchat_health_kb_probe) and asks the API.
        assert back.report["hosts"][node]["health_after"]["kb_probe"]["cited"] is True
        assert back.report["hosts"][node]["health_after"]["api_chat"]["chars"] > 0
        assert chat_tokens(node) > 0
        # The KB filled under the first release and asked under the new one still answers after the rollback.
        assert ask_kb(node, "--ask-only")["cited"] == ["chatfleet-lab-facts.csv"], node


@pytest.mark.check_mode
def test_check_lists_no_drift_on_the_converged_fleet(tmp_path):
    # After the rollouts above (a failed canary, a node rebooted mid-rollout, the rollback): check
    # mode finds nothing a run would change. Both GPU nodes in one batch: check mode changes nothing,
    # so a canary would only cost time.
    run = chatfleet(tmp_path, "check", "--serial", "100%", "--allow-all-at-once")
    assert run.rc == 0, run
    assert "drift: none" in run.output
    assert {h: r["changed"] for h, r in run.report["hosts"].items()} == {h: 0 for h in (*NODES, MILVUS_NODE)}


def test_uninstall_keeps_data_models_and_env_and_a_site_run_brings_the_node_back(tmp_path):
    node, other = "site-a100-1", "site-l40-1"
    run = chatfleet(tmp_path, "uninstall", "--limit", node, "--yes")
    assert run.rc == 0, run
    assert docker_exec(node, "systemctl", "list-units", "--all", "--plain", "--no-legend", "chatchat*").stdout.strip() == ""
    assert docker_exec(node, "bash", "-c", "ls /etc/systemd/system/chatchat* 2>/dev/null", check=False).stdout == ""
    for removed in ("/usr/local/libexec/chatfleet", "/etc/chatfleet/chatchat-services.json"):  # helpers, record
        assert docker_exec(node, "test", "-e", removed, check=False).returncode != 0, removed
    for kept in ("/opt/chatchat/current/startup.py", "/opt/chatchat/envs/0.2.8/bin/python",
                 "/opt/chatchat/models/tiny-gpt2/config.json", "/var/lib/chatchat"):
        assert docker_exec(node, "test", "-e", kept, check=False).returncode == 0, kept
    with pytest.raises(OSError):
        chat_tokens(node)
    assert chat_tokens(other) > 0 and main_pids(other)
    # Nothing left to remove: a second uninstall changes nothing.
    again = chatfleet(tmp_path, "uninstall", "--limit", node, "--yes")
    assert again.rc == 0 and again.report["hosts"][node]["changed"] == 0, again
    back = chatfleet(tmp_path, "site", "--limit", node)
    assert back.rc == 0, back
    assert back.report["hosts"][node]["health_after"]["healthy"]
    assert chat_tokens(node) > 0
