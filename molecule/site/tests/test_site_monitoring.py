"""Monitoring on the converged site: every node's node_exporter serves the probe's Chatchat and GPU
metrics (the GPUs from the recorded nvidia-smi), the site's Prometheus (site-milvus-1) scrapes every
node and Milvus, every query of the Grafana dashboard returns data from it, promtool passes the
rules' unit tests, and a stopped worker's alert goes from pending to firing, then clears when the
worker is back.

Runs after test_site.py (file order), before the fleet operations. The nodes share the host's
network, so the test reaches node_exporter and Prometheus on 127.0.0.1.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from testlib import ROOT, docker_exec

EXPORTER_PORT = {"site-l40-1": 9100, "site-a100-1": 9101, "site-milvus-1": 9102}
PROMETHEUS = "http://127.0.0.1:9090"
PROMETHEUS_NODE = "site-milvus-1"
WORKER_NODE, WORKER_UNIT, OPENAI_PORT = "site-l40-1", "chatchat-worker-tiny-gpt2", 20000
MIB = 1024 * 1024


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def query(expr: str) -> list[dict]:
    body = json.loads(get(f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what: str, check, timeout: float, every: float = 2):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def samples(node: str) -> dict[str, float]:
    text = get(f"http://127.0.0.1:{EXPORTER_PORT[node]}/metrics")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("chatfleet_")}


@pytest.mark.parametrize(("node", "gpus", "memory_mib"), [("site-l40-1", 1, 46068), ("site-a100-1", 8, 81920)])
def test_each_gpu_nodes_exporter_serves_its_services_and_its_recorded_gpus(node, gpus, memory_mib):
    found = samples(node)
    assert found["chatfleet_probe_success"] == 1
    assert found['chatfleet_unit_up{unit="chatchat-api"}'] == 1
    assert found['chatfleet_model_listed{model="tiny-gpt2"}'] == 1
    assert found['chatfleet_chat_completion_success{model="tiny-gpt2"}'] == 1
    assert found['chatfleet_chat_completion_tokens{model="tiny-gpt2"}'] > 0
    assert len([name for name in found if name.startswith("chatfleet_gpu_info{")]) == gpus
    assert found['chatfleet_gpu_memory_total_bytes{gpu="0"}'] == memory_mib * MIB
    assert any(name.startswith("chatfleet_release_info{release=\"v0.2.8-") for name in found)


def test_the_probe_runs_unprivileged_and_hardened():
    show = docker_exec(WORKER_NODE, "systemctl", "show", "chatfleet-metrics.service",
                       "--property=User,NoNewPrivileges").stdout
    assert "User=chatfleet-metrics" in show and "NoNewPrivileges=yes" in show
    owner = docker_exec(WORKER_NODE, "stat", "-c", "%U %a", "/var/lib/chatfleet-metrics/chatfleet.prom").stdout.split()
    assert owner == ["chatfleet-metrics", "644"]
    security = docker_exec(WORKER_NODE, "systemd-analyze", "security", "--no-pager", "chatfleet-metrics.service").stdout
    exposure = float(re.search(r"Overall exposure level for chatfleet-metrics.service: ([0-9.]+)", security).group(1))
    assert exposure <= 3.0, security[-600:]


def test_prometheus_scrapes_every_node_and_milvus():
    def all_up():
        targets = json.loads(get(f"{PROMETHEUS}/api/v1/targets"))["data"]["activeTargets"]
        state = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        return state if state and all(health == "up" for health in state.values()) and len(state) == 4 else None
    state = wait_for("every target up", all_up, 60)
    assert set(state) == {("node", "site-l40-1"), ("node", "site-a100-1"), ("node", "site-milvus-1"),
                          ("milvus", "site-milvus-1")}


def test_every_dashboard_query_returns_data():
    dashboard = json.loads((ROOT / "roles/prometheus_server/files/grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    empty = [expr for expr in exprs if not query(expr)]
    assert empty == []


def test_promtool_passes_the_rules_unit_tests():
    tests = (Path(__file__).parent / "prometheus" / "chatfleet-rules.test.yml").read_text()
    # Through the node's own shell: `docker cp` writes under a tmpfs that systemd mounted over /tmp.
    subprocess.run(["docker", "exec", "-i", PROMETHEUS_NODE, "sh", "-c", "cat > /root/chatfleet-rules.test.yml"],
                   input=tests, text=True, check=True)
    done = docker_exec(PROMETHEUS_NODE, "promtool", "test", "rules", "/root/chatfleet-rules.test.yml", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _alert_state() -> str | None:
    alerts = json.loads(get(f"{PROMETHEUS}/api/v1/alerts"))["data"]["alerts"]
    states = [a["state"] for a in alerts if a["labels"].get("alertname") == "ChatchatUnitDown"
              and a["labels"].get("instance") == WORKER_NODE and a["labels"].get("unit") == WORKER_UNIT]
    return states[0] if states else None


def test_a_stopped_worker_alerts_pending_then_firing_then_clears():
    docker_exec(WORKER_NODE, "systemctl", "stop", f"{WORKER_UNIT}.service")
    try:
        stopped = time.monotonic()
        wait_for("ChatchatUnitDown pending", lambda: _alert_state() == "pending", 45)
        pending_after = time.monotonic() - stopped
        wait_for("ChatchatUnitDown firing", lambda: _alert_state() == "firing", 90)
        firing_after = time.monotonic() - stopped
        # The rule's for: 1m, counted from the first evaluation that saw the unit down.
        assert firing_after - pending_after >= 55, (pending_after, firing_after)
    finally:
        docker_exec(WORKER_NODE, "systemctl", "start", f"{WORKER_UNIT}.service")

    def listed():
        try:
            models = json.loads(get(f"http://127.0.0.1:{OPENAI_PORT}/v1/models"))["data"]
        except OSError:
            return False
        return any(model["id"] == "tiny-gpt2" for model in models)
    wait_for("the worker registered again", listed, 180)
    wait_for("ChatchatUnitDown cleared", lambda: _alert_state() is None, 60)
