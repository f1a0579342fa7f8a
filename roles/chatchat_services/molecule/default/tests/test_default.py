"""State of the converged node: units, processes, sandboxing, health, the A100 profile, chat."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import MAIN_PROCESS, MODEL, PORTS, PYTHON, RELEASE, UNITS, USER, WORKERS, chat, http, show


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_enabled_and_running(host, unit):
    service = host.service(unit)
    assert service.is_enabled and service.is_running


def test_the_target_starts_every_unit_at_boot(host):
    assert host.service("chatchat.target").is_enabled
    wants = host.check_output("systemctl show -p Wants --value chatchat.target").split()
    assert sorted(wants) == sorted(f"{unit}.service" for unit in UNITS)


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.security
def test_the_main_process_is_the_real_service_running_as_the_service_user(host, unit):
    pid = show(host, unit, "MainPID")["MainPID"]
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    assert cmdline.startswith(PYTHON) and MAIN_PROCESS[unit] in cmdline
    uid = host.user(USER).uid
    uids = re.search(r"^Uid:\s+(.*)$", host.file(f"/proc/{pid}/status").content_string, re.M).group(1).split()
    assert set(map(int, uids)) == {uid}


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.security
def test_sandboxing(host, unit):
    props = show(host, unit, "User", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                 "PrivateDevices", "CapabilityBoundingSet", "ReadWritePaths", "RestrictNamespaces",
                 "ProtectKernelTunables", "ProtectControlGroups", "Restart", "KillMode", "UMask")
    assert props["User"] == USER
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes" and props["PrivateTmp"] == "yes"
    # The lab's workers run on the CPU, so no unit needs a device.
    assert props["PrivateDevices"] == "yes"
    assert props["CapabilityBoundingSet"] == ""
    assert sorted(props["ReadWritePaths"].split()) == ["/var/lib/chatchat", "/var/log/chatchat"]
    assert props["RestrictNamespaces"] == "yes" and props["ProtectKernelTunables"] == "yes"
    assert props["ProtectControlGroups"] == "yes" and props["UMask"] == "0027"
    assert props["Restart"] == "on-failure" and props["KillMode"] == "control-group"


def test_the_unit_files_verify(host):
    paths = " ".join(f"/etc/systemd/system/{unit}.service" for unit in UNITS)
    result = host.run(f"systemd-analyze verify /etc/systemd/system/chatchat.target {paths}")
    assert result.rc == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.security
def test_security_exposure_is_recorded_and_low(host):
    """systemd-analyze security's overall exposure per unit (0 = locked down, 10 = unprotected)."""
    scores = {}
    for unit in UNITS:
        out = host.check_output(f"systemd-analyze security --no-pager {unit}.service")
        scores[unit] = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    record = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")) / "chatchat-services-security.json"
    record.write_text(json.dumps(scores, indent=1))
    print("systemd-analyze security:", scores)
    assert all(score <= 4.0 for score in scores.values()), scores


@pytest.mark.parametrize("url, method, expected", [
    (f"http://127.0.0.1:{PORTS['controller']}/test_connection", "GET", "success"),
    (f"http://127.0.0.1:{PORTS['webui']}/_stcore/health", "GET", "ok"),
    (f"http://127.0.0.1:{PORTS['api']}/knowledge_base/list_knowledge_bases", "GET", '"code":200'),
])
def test_health_endpoints_answer(host, url, method, expected):
    status, text = http(host, url, method)
    assert status == 200 and expected in text.replace(" ", ""), text


def test_both_workers_serve_the_model_and_the_controller_lists_it(host):
    for port, _ in WORKERS.values():
        status, text = http(host, f"http://127.0.0.1:{port}/worker_get_status", "POST")
        assert status == 200 and json.loads(text)["model_names"] == [MODEL]
    status, text = http(host, f"http://127.0.0.1:{PORTS['controller']}/list_models", "POST")
    assert status == 200 and json.loads(text)["models"] == [MODEL]
    status, text = http(host, f"http://127.0.0.1:{PORTS['openai_api']}/v1/models")
    assert [m["id"] for m in json.loads(text)["data"]] == [MODEL]


def test_a_chat_completion_returns_generated_tokens(host):
    answer = chat(host)
    assert answer["model"] == MODEL
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["choices"][0]["message"]["role"] == "assistant"


def worker_argv(host, name: str) -> list[str]:
    pid = show(host, f"chatchat-worker-{name}", "MainPID")["MainPID"]
    return host.file(f"/proc/{pid}/cmdline").content_string.split("\0")


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("name", list(WORKERS))
def test_the_workers_carry_the_a100_profile_and_their_gpus(host, name):
    argv, (port, gpus) = worker_argv(host, name), WORKERS[name]
    assert flag(argv, "--limit-worker-concurrency") == "300"  # the POC's A100 value (L40: 100)
    assert flag(argv, "--num-gpus") == "1" and flag(argv, "--device") == "cpu"
    assert flag(argv, "--port") == str(port) and flag(argv, "--model-path") == f"/opt/chatchat/models/{MODEL}"
    pid = show(host, f"chatchat-worker-{name}", "MainPID")["MainPID"]
    environ = dict(item.split("=", 1) for item in host.file(f"/proc/{pid}/environ").content_string.split("\0") if "=" in item)
    assert environ["CUDA_VISIBLE_DEVICES"] == gpus
    assert environ["HF_HUB_OFFLINE"] == "1" and environ["LOGDIR"] == "/var/log/chatchat"


def test_server_config_carries_the_same_worker_values_as_the_unit(host):
    """startup.py reads FSCHAT_MODEL_WORKERS; the units were written from the same derived worker."""
    script = ("import json, sys; sys.path.insert(0, '.'); from configs.server_config import FSCHAT_MODEL_WORKERS as W; "
              f"print(json.dumps(W[{MODEL!r}]))")
    served = json.loads(host.check_output(f"cd {RELEASE} && {PYTHON} -c \"{script}\""))
    argv = worker_argv(host, "tiny-gpt2-0")
    assert served["port"] == int(flag(argv, "--port"))
    assert served["limit_worker_concurrency"] == int(flag(argv, "--limit-worker-concurrency"))
    assert served["num_gpus"] == served["tensor_parallel_size"] == int(flag(argv, "--num-gpus"))
    assert served["gpus"] == "0" and served["infer_turbo"] is False
    # The A100 profile's vLLM keys are in the config too (a vLLM worker would get them as flags).
    assert served["gpu_memory_utilization"] == 0.95 and served["max_num_seqs"] == 512
    assert served["max_model_len"] == 4096


@pytest.mark.security
def test_no_secret_is_in_a_unit_file(host):
    for unit in UNITS:
        text = host.file(f"/etc/systemd/system/{unit}.service").content_string
        assert "lab-milvus" not in text and "password" not in text.lower()


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_keeps_its_local_calls_off_any_proxy(host, unit):
    # A proxy that systemd's manager environment hands every unit must not carry the calls to the
    # controller, between the services or to Milvus (the lab inventory's chatchat_milvus host).
    environment = dict(item.split("=", 1) for item in show(host, unit, "Environment")["Environment"].split())
    for name in ("no_proxy", "NO_PROXY"):
        entries = environment[name].split(",")
        assert {"localhost", "127.0.0.1", "services-a100"} <= set(entries), (name, entries)
        # No IPv6 literal: Chatchat's get_httpx_client makes an invalid httpx key of one (filter_plugins/no_proxy.py).
        assert not [entry for entry in entries if ":" in entry], (name, entries)
