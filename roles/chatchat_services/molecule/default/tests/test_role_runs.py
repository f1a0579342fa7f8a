"""Reruns of the converge playbook (gpu_preflight, chatchat, chatchat_services) against the running node:
idempotence, check mode, targeted restarts, recovery, and bad input that must change no unit."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (NODE, PORTS, RELEASE, UNITS, WORKERS, chat, http, main_pids, show, wait_models_listed,
                      wait_units_active)
from testlib import ROOT, docker_exec, run_playbook, wait_booted

CONVERGE = ROOT / "roles" / "chatchat_services" / "molecule" / "default" / "converge.yml"
HEALTH_PROBE = ROOT / "roles" / "chatchat_health" / "files" / "chatchat-health.py"
MANIFEST = "/etc/chatfleet/chatchat-services.json"
LAB_OVERRIDES = {"all": {"infer_turbo": False}}


def unit_digests(host) -> dict[str, str]:
    return {unit: hashlib.sha256(host.file(f"/etc/systemd/system/{unit}.service").content).hexdigest()
            for unit in UNITS}


def restarted(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(unit for unit in before if before[unit] != after[unit])


@pytest.mark.check_mode
def test_check_mode_changes_nothing(host):
    before = main_pids(host)
    run = run_playbook(CONVERGE, "--check", "--diff")
    assert run.rc == 0 and run.changed == 0, run
    assert main_pids(host) == before


def test_a_config_change_restarts_the_api_and_the_webui_and_a_workers_tuning_that_worker_only(host):
    """Three runs, each restarting only the units that read what it changed: the temperature (read by
    the API and the WebUI), then the temperature back with one worker's tuning (those two again, and
    that worker), then the tuning back (that worker only)."""
    before = main_pids(host)
    run = run_playbook(CONVERGE, extra_vars={"chatchat_temperature": 0.5})
    assert run.rc == 0, run
    after_config = main_pids(host)
    assert restarted(before, after_config) == ["chatchat-api", "chatchat-webui"]
    assert http(host, f"http://127.0.0.1:{PORTS['webui']}/_stcore/health")[0] == 200

    overrides = dict(LAB_OVERRIDES, **{"tiny-gpt2-1": {"limit_worker_concurrency": 7}})
    run = run_playbook(CONVERGE, extra_vars={"chatchat_vllm_overrides": overrides})
    assert run.rc == 0, run
    after_tuning = main_pids(host)
    assert restarted(after_config, after_tuning) == ["chatchat-api", "chatchat-webui", "chatchat-worker-tiny-gpt2-1"]
    argv = host.file(f"/proc/{after_tuning['chatchat-worker-tiny-gpt2-1']}/cmdline").content_string.split("\0")
    assert argv[argv.index("--limit-worker-concurrency") + 1] == "7"
    assert chat(host)["usage"]["completion_tokens"] > 0

    run = run_playbook(CONVERGE)
    assert run.rc == 0 and restarted(after_tuning, main_pids(host)) == ["chatchat-worker-tiny-gpt2-1"], run


@pytest.mark.fault
def test_a_killed_worker_is_restarted_by_systemd_and_serves_again(host):
    unit = "chatchat-worker-tiny-gpt2-0"
    pid = show(host, unit, "MainPID")["MainPID"]
    docker_exec(NODE, "bash", "-c", f"kill -9 {pid}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = show(host, unit, "MainPID", "ActiveState", "NRestarts")
        status, _ = http(host, f"http://127.0.0.1:{WORKERS['tiny-gpt2-0'][0]}/worker_get_status", "POST", timeout=5)
        if state["MainPID"] not in ("0", pid) and state["ActiveState"] == "active" and status == 200:
            break
        time.sleep(2)
    else:
        pytest.fail(f"{unit} did not come back after kill -9: {state}")
    assert int(state["NRestarts"]) >= 1
    wait_models_listed(host)
    assert chat(host)["usage"]["completion_tokens"] > 0


@pytest.mark.fault
def test_a_port_held_by_another_process_stops_the_run_then_the_next_run_recovers(host):
    unit, port = "chatchat-webui", PORTS["webui"]
    docker_exec(NODE, "systemctl", "stop", f"{unit}.service")
    docker_exec(NODE, "systemd-run", "--unit=port-squatter", "python3", "-m", "http.server", str(port),
                "--bind", "0.0.0.0")
    try:
        deadline = time.monotonic() + 30
        while http(host, f"http://127.0.0.1:{port}/", timeout=2)[0] != 200 and time.monotonic() < deadline:
            time.sleep(1)
        others = {u: pid for u, pid in main_pids(host).items() if u != unit}
        digests = unit_digests(host)
        run = run_playbook(CONVERGE)
        assert run.rc != 0 and run.changed == 0, run
        failure = run.failure(NODE)["msg"]
        assert f"port {port} is in use" in failure and "chatchat_services_" in failure and NODE in failure, failure
        assert {u: pid for u, pid in main_pids(host).items() if u != unit} == others
        assert unit_digests(host) == digests
        # The unit's own pre-start check refuses too, naming the port, instead of a crash loop.
        start = host.run(f"systemctl start {unit}.service")
        assert start.rc != 0
        assert f"port {port} is in use" in host.run(f"journalctl -u {unit}.service -n 20 --no-pager").stdout
    finally:
        docker_exec(NODE, "systemctl", "stop", "port-squatter", check=False)
        docker_exec(NODE, "systemctl", "reset-failed", f"{unit}.service", check=False)
    run = run_playbook(CONVERGE)
    assert run.rc == 0, run
    assert host.service(unit).is_running
    assert http(host, f"http://127.0.0.1:{port}/_stcore/health")[0] == 200


@pytest.mark.fault
def test_a_crash_looping_worker_fails_the_run_naming_it_and_the_next_run_recovers(host):
    """The fault: a worker whose process exits at once, every time systemd starts it (a drop-in
    replaces its ExecStart), until the start limit stops it. The run fails at that unit's gate with
    its log lines, leaves the other units, the unit files and the release alone; once the cause is
    gone, the next run resets and starts the unit, and the run after it changes nothing."""
    unit = "chatchat-worker-tiny-gpt2-1"
    dropin = f"/etc/systemd/system/{unit}.service.d"
    others = {u: pid for u, pid in main_pids(host).items() if u != unit}
    digests, release = unit_digests(host), host.file(RELEASE).linked_to
    docker_exec(NODE, "mkdir", "-p", dropin)
    docker_exec(NODE, "bash", "-c", f"printf '[Service]\\nExecStart=\\nExecStart=/bin/sh -c \"echo simulated crash >&2; exit 3\"\\n' "
                                    f"> {dropin}/zz-fault.conf && systemctl daemon-reload && systemctl restart {unit}.service",
                check=False)
    try:
        run = run_playbook(CONVERGE, extra_vars={"chatchat_services_health_timeout": 60})
    finally:
        docker_exec(NODE, "bash", "-c", f"rm -rf {dropin} && systemctl daemon-reload", check=False)
    assert run.rc != 0, run
    failure = run.failure(NODE)["msg"]
    assert unit in failure and "simulated crash" in failure, failure
    assert {u: pid for u, pid in main_pids(host).items() if u != unit} == others
    assert unit_digests(host) == digests and host.file(RELEASE).linked_to == release
    assert http(host, f"http://127.0.0.1:{WORKERS['tiny-gpt2-0'][0]}/worker_get_status", "POST")[0] == 200

    recover = run_playbook(CONVERGE)
    assert recover.rc == 0, recover
    assert host.service(unit).is_running
    wait_models_listed(host)
    assert chat(host)["usage"]["completion_tokens"] > 0


def halt(node: str) -> None:
    """Shut the node down at once, as its power button would: SIGRTMIN+3 makes systemd (PID 1) halt,
    stopping every unit, sshd among them, and the container exits (0.3 s on the lab). `docker stop`
    sends SIGTERM, which systemd takes as a re-exec: the node then runs on for the whole stop timeout,
    and a run on a fast machine can finish in it (seen in CI)."""
    subprocess.run(["docker", "kill", "--signal", "SIGRTMIN+3", node], check=True, capture_output=True)
    try:
        subprocess.run(["docker", "wait", node], check=True, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        subprocess.run(["docker", "kill", node], check=True, capture_output=True)


@pytest.mark.fault
def test_a_node_that_reboots_mid_run_comes_back_serving_and_the_next_run_converges_it(host):
    """A run that changes one worker's tuning loses the node (it halts) at its first change
    and the node boots again (systemd starts anew, /run and /tmp are new) once that run has ended: the
    run fails; the units come back at boot through chatchat.target with the same release, each unit
    file whole (as it was or as the run wrote it); the next run converges it. Stop, then start,
    not `docker restart`: a restart can fit between two tasks, and the run would then go on and pass."""
    unit = "chatchat-worker-tiny-gpt2-1"
    digests, release = unit_digests(host), host.file(RELEASE).linked_to
    tuned = {"chatchat_vllm_overrides": dict(LAB_OVERRIDES, **{"tiny-gpt2-1": {"limit_worker_concurrency": 9}})}
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    varfile = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reboot-test-vars.json"
    varfile.write_text(json.dumps(tuned))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FILTER_PLUGINS=str(ROOT / "filter_plugins"))
    went_down_at = None
    with subprocess.Popen(["ansible-playbook", "-i", str(inventory), "-e", f"@{varfile}", str(CONVERGE)], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as interrupted:
        lines = []
        try:
            for line in interrupted.stdout:
                lines.append(line)
                if went_down_at is None and line.startswith(f"changed: [{NODE}]"):
                    went_down_at = lines[-2:]
                    halt(NODE)
            interrupted.wait(timeout=600)
        finally:
            subprocess.run(["docker", "start", NODE], check=True, capture_output=True)
    output = "".join(lines)
    assert went_down_at, output[-3000:]  # the node went down while the run was changing it
    assert interrupted.returncode != 0, output[-3000:]
    wait_booted(NODE)
    wait_models_listed(host)
    wait_units_active(host)
    assert host.file(RELEASE).linked_to == release
    for name, digest in unit_digests(host).items():  # each unit file whole: the old one, or the run's new one
        text = host.file(f"/etc/systemd/system/{name}.service").content_string
        assert digest == digests[name] or (name == unit and exec_flags(text)["--limit-worker-concurrency"] == "9"
                                           and text.rstrip().endswith("WantedBy=chatchat.target")), (name, text)
    assert chat(host)["usage"]["completion_tokens"] > 0
    # The next run (the inventory's values again) brings every unit file back to them.
    back = run_playbook(CONVERGE)
    assert back.rc == 0 and unit_digests(host) == digests, back
    wait_models_listed(host)


@pytest.mark.bad_input
def test_a_worker_for_a_model_missing_on_the_node_fails_before_any_unit_changes(host):
    """The wiring of the role's preflight: the run stops before changing a unit, and the failed task
    names the variable, the host and the missing file. (The rules a filter decides (ports used twice,
    tensor parallelism not matching the GPUs, GPU memory over-committed) are unit-tested with their
    filters: tests/unit/plugins/filter/test_vllm_worker_profiles.py and the chatchat role's.)"""
    pids, digests = main_pids(host), unit_digests(host)
    ghost = [{"name": "ghost-0", "model": "ghost", "port": WORKERS["tiny-gpt2-0"][0], "cuda_visible_devices": "0",
              "infer_turbo": False}]
    run = run_playbook(CONVERGE, extra_vars={"chatchat_services_workers": ghost})
    assert run.rc != 0 and run.changed == 0, run
    failure = run.failure(NODE)["msg"]
    assert "/opt/chatchat/models/ghost/config.json" in failure and NODE in failure, failure
    assert "chatchat_services_workers" in failure or "chatchat_services_model_root_path" in failure, failure
    assert main_pids(host) == pids and unit_digests(host) == digests


def exec_flags(unit_text: str) -> dict[str, str]:
    """The ExecStart= line of a unit as {--flag: value} (plus "argv": the whole line)."""
    argv = next(line for line in unit_text.splitlines() if line.startswith("ExecStart=")).split()
    flags = {word: argv[i + 1] for i, word in enumerate(argv[:-1]) if word.startswith("--")}
    return dict(flags, argv=" ".join(argv))


def test_prod_vllm_units_render_with_the_l40_and_a100_profiles(host):
    """The prod path (vLLM on GPUs) cannot run here: its units are rendered from the prod inventory's
    group profiles over the recorded GPUs and checked by systemd-analyze verify on the node."""
    run = run_playbook(Path(__file__).resolve().parents[1] / "render_units.yml")
    assert run.rc == 0, run
    l40 = host.file("/tmp/render-prod-units/l40/chatchat-worker-chatglm3-6b-32k.service").content_string
    l40_exec = exec_flags(l40)
    assert "fastchat.serve.vllm_worker" in l40_exec["argv"]
    assert (l40_exec["--gpu-memory-utilization"], l40_exec["--limit-worker-concurrency"]) == ("0.9", "100")
    assert l40_exec["--tensor-parallel-size"] == l40_exec["--num-gpus"] == "1"
    # A GPU worker keeps its devices: nothing that implies a device allow-list.
    assert 'Environment="CUDA_VISIBLE_DEVICES=0"' in l40
    assert "PrivateDevices" not in l40 and "ProtectClock" not in l40 and "DeviceAllow" not in l40
    a100 = sorted(host.file("/tmp/render-prod-units/a100").listdir())
    assert [n for n in a100 if n.startswith("chatchat-worker-")] == [
        f"chatchat-worker-chatglm3-6b-32k-{n}.service" for n in range(8)]
    worker7 = host.file("/tmp/render-prod-units/a100/chatchat-worker-chatglm3-6b-32k-7.service").content_string
    flags = exec_flags(worker7)
    assert {key: flags[key] for key in ("--gpu-memory-utilization", "--max-num-seqs", "--max-paddings",
                                         "--limit-worker-concurrency", "--tensor-parallel-size", "--num-gpus",
                                         "--port")} == {
        "--gpu-memory-utilization": "0.95", "--max-num-seqs": "512", "--max-paddings": "256",
        "--limit-worker-concurrency": "300", "--tensor-parallel-size": "1", "--num-gpus": "1", "--port": "20009"}
    assert 'Environment="CUDA_VISIBLE_DEVICES=7"' in worker7
    assert "--max-num-batched-tokens" not in worker7 and "--worker-use-ray" not in worker7


def test_a_rendered_gpu_worker_unit_leaves_the_devices_open_once_loaded(host):
    """systemd itself reads the rendered L40 worker (loaded as a transient copy, never started): no
    device allow-list, so /dev/nvidia* stays reachable; the lab's CPU worker, for contrast, has one."""
    copy = "/run/systemd/system/render-check-gpu-worker.service"
    docker_exec(NODE, "cp", "/tmp/render-prod-units/l40/chatchat-worker-chatglm3-6b-32k.service", copy)
    try:
        docker_exec(NODE, "systemctl", "daemon-reload")
        gpu = host.check_output("systemctl show -p DevicePolicy -p DeviceAllow render-check-gpu-worker.service")
        cpu = host.check_output("systemctl show -p DevicePolicy -p DeviceAllow chatchat-worker-tiny-gpt2-0.service")
    finally:
        docker_exec(NODE, "rm", "-f", copy)
        docker_exec(NODE, "systemctl", "daemon-reload")
    gpu_props = dict(line.split("=", 1) for line in gpu.splitlines())
    cpu_props = dict(line.split("=", 1) for line in cpu.splitlines())
    assert gpu_props["DevicePolicy"] == "auto" and gpu_props.get("DeviceAllow", "") == ""
    assert cpu_props["DevicePolicy"] == "closed" or cpu_props.get("DeviceAllow", "") != ""


def assert_a_dead_startup_child_is_not_healthy(host):
    """startup.py -o runs the controller and the openai_api server as children and stays alive when one
    dies (upstream's parent does): the unit is still active, but the health probe (chatchat_health's
    script, from the node's record of its services) finds it not answering."""
    # The child is found by its port from this machine, whose root sees every process of the shared
    # network namespace (root in the node lacks CAP_SYS_PTRACE, so its `ss -p` cannot name the
    # service account's processes).
    listener = subprocess.run(["ss", "-ltnpH", f"sport = :{PORTS['controller']}"], capture_output=True, text=True,
                              check=True).stdout
    controller = sorted(set(re.findall(r"pid=(\d+)", listener)))
    assert len(controller) == 1, listener
    parent = show(host, "chatchat-openai-api", "MainPID")["MainPID"]
    subprocess.run(["kill", "-KILL", controller[0]], check=True)
    time.sleep(1)
    # The parent lives on, and so does its unit.
    assert show(host, "chatchat-openai-api", "ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": parent}
    probe = host.run(f"python3 - {MANIFEST} --completion-timeout 10 <<'EOF'\n{HEALTH_PROBE.read_text()}\nEOF")
    result = json.loads(probe.stdout)
    assert not result["healthy"] and not result["units"]["chatchat-openai-api"]["answers"], result
    assert "unit chatchat-openai-api does not answer at " in " ".join(result["problems"]), result


@pytest.mark.fault
def test_startup_mode_runs_the_pocs_startup_py_one_mode_per_unit_then_fastchat_mode_returns(host):
    startup = {"chatchat_services_launch_mode": "startup", "chatchat_vllm_workers": [{"name": "tiny-gpt2", "gpus": [0]}]}
    run = run_playbook(CONVERGE, extra_vars=startup)
    assert run.rc == 0, run
    try:
        expected = {"chatchat-openai-api": "startup.py -o", "chatchat-worker-tiny-gpt2": "startup.py -m -n tiny-gpt2",
                    "chatchat-api": "startup.py --api", "chatchat-webui": "startup.py -w"}
        for unit, command in expected.items():
            props = show(host, unit, "MainPID", "ActiveState", "WorkingDirectory")
            assert props["ActiveState"] == "active" and props["WorkingDirectory"] == "/opt/chatchat/current"
            assert command in host.file(f"/proc/{props['MainPID']}/cmdline").content_string.replace("\0", " ")
        # The fastchat mode's units are gone (stopped, disabled, removed).
        for unit in ("chatchat-controller", "chatchat-worker-tiny-gpt2-0", "chatchat-worker-tiny-gpt2-1"):
            assert not host.file(f"/etc/systemd/system/{unit}.service").exists
            assert show(host, unit, "LoadState")["LoadState"] == "not-found"
        assert chat(host)["usage"]["completion_tokens"] > 0
        assert http(host, f"http://127.0.0.1:{PORTS['webui']}/_stcore/health")[0] == 200
        assert_a_dead_startup_child_is_not_healthy(host)
    finally:
        run = run_playbook(CONVERGE)
    assert run.rc == 0, run
    assert all(host.service(unit).is_running for unit in UNITS)
    assert not host.file("/etc/systemd/system/chatchat-worker-tiny-gpt2.service").exists
    assert chat(host)["usage"]["completion_tokens"] > 0


@pytest.mark.idempotence
def test_a_second_run_changes_nothing_and_restarts_nothing(host):
    """Last: after every change, fault and recovery above, a run changes nothing and restarts nothing."""
    before = main_pids(host)
    run = run_playbook(CONVERGE)
    assert run.rc == 0 and run.changed == 0, run
    assert main_pids(host) == before
