"""chatchat_service_units: the units of a host in both launch modes, over workers derived from recordings."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _filters(name: str) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(f"{name}_filters", ROOT / "filter_plugins" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


units_of = _filters("chatchat_units")["chatchat_service_units"]
WORKER = {"name": "tiny-gpt2-0", "model": "tiny-gpt2", "port": 21002, "gpus": [0], "cuda_visible_devices": "0",
          "infer_turbo": False, "num_gpus": 1, "tensor_parallel_size": 1, "limit_worker_concurrency": 300,
          "gpu_memory_utilization": 0.95, "max_model_len": 4096, "sizing": {}}
HOST = {"launch_mode": "fastchat", "python": "/env/bin/python", "app_dir": "/opt/chatchat/current",
        "model_root": "/opt/chatchat/models", "workers": [WORKER, dict(WORKER, name="tiny-gpt2-1", port=21003,
                                                                      gpus=[1], cuda_visible_devices="1")],
        "device": "cpu", "bind_host": "0.0.0.0", "advertise_host": "127.0.0.1",
        "ports": {"controller": 21001, "openai_api": 21000, "api": 8861, "webui": 9501},
        "dispatch_method": "shortest_queue", "webui": True}


def host(**changes: Any) -> dict[str, Any]:
    return dict(copy.deepcopy(HOST), **changes)


def test_fastchat_mode_starts_the_real_modules_in_order() -> None:
    units = units_of(host())
    assert [u["name"] for u in units] == ["chatchat-controller", "chatchat-worker-tiny-gpt2-0",
                                          "chatchat-worker-tiny-gpt2-1", "chatchat-openai-api", "chatchat-api",
                                          "chatchat-webui"]
    by_name = {u["name"]: u for u in units}
    assert by_name["chatchat-controller"]["argv"][1:3] == ["-m", "fastchat.serve.controller"]
    assert by_name["chatchat-openai-api"]["argv"][1:3] == ["-m", "fastchat.serve.openai_api_server"]
    assert by_name["chatchat-api"]["argv"][1] == "server/api.py" and by_name["chatchat-api"]["app"]
    assert by_name["chatchat-webui"]["argv"][1:5] == ["-m", "streamlit", "run", "webui.py"]
    worker = by_name["chatchat-worker-tiny-gpt2-1"]
    assert worker["argv"][2] == "fastchat.serve.model_worker" and "--device" in worker["argv"]
    assert worker["environment"] == {"CUDA_VISIBLE_DEVICES": "1"} and worker["model"] == "tiny-gpt2"
    assert worker["after"] == ["chatchat-controller"] and not worker["gpu"] and not worker["app"]
    assert worker["health"] == {"url": "http://127.0.0.1:21003/worker_get_status", "method": "POST"}
    assert by_name["chatchat-api"]["health"]["url"].endswith(":8861/knowledge_base/list_knowledge_bases")
    assert by_name["chatchat-webui"]["health"]["url"].endswith(":9501/_stcore/health")


def test_a_vllm_worker_needs_the_gpu() -> None:
    vllm = dict(WORKER, infer_turbo="vllm")
    (_, worker, *_rest) = units_of(host(workers=[vllm], device="cuda"))
    assert worker["argv"][2] == "fastchat.serve.vllm_worker" and worker["gpu"]


def test_startup_mode_runs_one_startup_py_mode_per_unit() -> None:
    units = units_of(host(launch_mode="startup", workers=[WORKER]))
    assert [(u["name"], u["argv"][1:]) for u in units] == [
        ("chatchat-openai-api", ["startup.py", "-o"]),
        ("chatchat-worker-tiny-gpt2-0", ["startup.py", "-m", "-n", "tiny-gpt2"]),
        ("chatchat-api", ["startup.py", "--api"]),
        ("chatchat-webui", ["startup.py", "-w"])]
    assert units[0]["ports"] == [21000, 21001] and all(u["app"] for u in units)


def test_startup_mode_refuses_two_workers_of_one_model() -> None:
    with pytest.raises(AnsibleFilterError, match="one worker per model.*tiny-gpt2-0 and tiny-gpt2-1"):
        units_of(host(launch_mode="startup"))


def test_without_the_webui_there_is_no_webui_unit_and_its_port_is_free() -> None:
    units = units_of(host(webui=False, ports=dict(HOST["ports"], webui=8861)))
    assert "chatchat-webui" not in [u["name"] for u in units]


@pytest.mark.parametrize("change, fragment", [
    ({"ports": dict(HOST["ports"], webui=8861)}, "port 8861 is used twice.*chatchat_services_api_port.*chatchat_services_webui_port"),
    ({"workers": [WORKER, dict(WORKER, name="b", port=21001)]}, "port 21001 is used twice.*worker b"),
    ({"workers": [dict(WORKER, name="a b")]}, "cannot name a systemd unit"),
    ({"workers": []}, "chatchat_services_workers is empty"),
    ({"launch_mode": "poc"}, "chatchat_services_launch_mode"),
    ({"ports": dict(HOST["ports"], api=70000)}, "1-65535"),
])
def test_bad_hosts_fail_naming_the_problem(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AnsibleFilterError, match=fragment):
        units_of(host(**change))


def test_missing_settings_are_named() -> None:
    settings = host()
    del settings["device"]
    with pytest.raises(AnsibleFilterError, match="missing settings: device"):
        units_of(settings)
