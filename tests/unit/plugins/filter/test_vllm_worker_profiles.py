"""Unit tests for filter_plugins/vllm_worker_profiles.py (vLLM worker profiles per GPU host).

The GPUs come from the recordings in molecule/fixtures/gpu/recordings, parsed by the nvidia_smi_gpus
filter as gpu_preflight does; the tuning comes from the lab inventory's l40 and a100 group_vars.
The expected max_model_len values are worked out by hand in the comments (vLLM 0.2.x memory model:
per GPU, memory * utilization - weights / tp - 1024 MiB reserve, divided by the KV bytes per token a
GPU holds, rounded down to a block of 16 tokens).
"""
from __future__ import annotations

import copy
import importlib.util
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"
GROUP_VARS = ROOT / "inventories" / "lab" / "group_vars"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_filters", ROOT / "filter_plugins" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load("vllm_worker_profiles")
FILTERS = plugin.FilterModule().filters()
profiles = FILTERS["vllm_worker_profiles"]
busy_gpus = FILTERS["vllm_busy_gpus"]
NVIDIA_SMI = _load("nvidia_smi").FilterModule().filters()
nvidia_smi_gpus = NVIDIA_SMI["nvidia_smi_gpus"]


def recorded_gpus(recording: str, usage: bool = False) -> list[dict[str, Any]]:
    """gpu_preflight_gpus as the gpu_preflight role sets it on a host that answers like the recording
    (with usage: with the memory in use and the processes of its plain nvidia-smi table, as the role does)."""
    query = (RECORDINGS / recording / "query-gpu.csv").read_text(encoding="utf-8")
    if not usage:
        return nvidia_smi_gpus(query)
    table = (RECORDINGS / recording / "nvidia-smi.txt").read_text(encoding="utf-8")
    return nvidia_smi_gpus(query, usage=NVIDIA_SMI["nvidia_smi_usage"](table))


def group_profile(group: str) -> dict[str, Any]:
    text = (GROUP_VARS / group / "chatchat.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["chatchat_fschat_model_workers_default"]


L40 = recorded_gpus("l40x1")
A100_80G = recorded_gpus("a100x1")
A100_80G_X8 = recorded_gpus("a100x8")
# No recording of a 40 GB A100: the a100x1 line with the PCIe 40 GB card's name and memory.
A100_40G = [dict(A100_80G[0], name="NVIDIA A100-PCIE-40GB", memory_mib=40960)]

# THUDM/chatglm3-6b-32k: 28 layers, 32 heads, 2 key/value groups of 128 channels.
CHATGLM3 = {"name": "chatglm3-6b-32k", "params_b": 6.24, "max_model_len": 32768,
            "kv_bytes_per_token": 2 * 28 * 2 * 128 * 2, "num_attention_heads": 32, "num_key_value_heads": 2}
# NousResearch/Yarn-Llama-2-13b-64k: 40 layers, 40 heads of 128 (no grouped KV): 800 KiB per token.
YARN_13B = {"name": "Yarn-Llama-2-13b-64k", "params_b": 13.0, "max_model_len": 65536,
            "kv_bytes_per_token": 2 * 40 * 40 * 128 * 2, "num_attention_heads": 40, "num_key_value_heads": 40}
# meta-llama/Llama-2-70b-chat-hf: 80 layers, 64 heads, 8 key/value heads of 128.
LLAMA2_70B = {"name": "Llama-2-70b-chat-hf", "params_b": 69.0, "max_model_len": 4096,
              "kv_bytes_per_token": 2 * 80 * 8 * 128 * 2, "num_attention_heads": 64, "num_key_value_heads": 8}
# 01-ai/Yi-34B-Chat: 68.8 GB of bf16 weights.
YI_34B = {"name": "Yi-34B-Chat", "params_b": 34.4, "max_model_len": 4096}

TAKEN = [20000, 20001, 7861, 8501]  # openai_api, controller, API server, WebUI


def failure(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(AnsibleFilterError) as raised:
        profiles(*args, **kwargs)
    return str(raised.value)


# --- The GPU hosts the issue names -------------------------------------------------------------

def test_recordings_are_the_gpus_the_tests_claim() -> None:
    assert [(g["name"], g["memory_mib"]) for g in L40] == [("NVIDIA L40", 46068)]
    assert [(g["name"], g["memory_mib"]) for g in A100_80G] == [("NVIDIA A100-SXM4-80GB", 81920)]
    assert [g["index"] for g in A100_80G_X8] == list(range(8))


def test_one_l40_serves_chatglm3_with_the_poc_values() -> None:
    (worker,) = profiles(L40, CHATGLM3, group_profile("l40"))
    assert worker == {
        "name": "chatglm3-6b-32k", "model": "chatglm3-6b-32k", "gpus": [0], "cuda_visible_devices": "0",
        "num_gpus": 1, "tensor_parallel_size": 1, "infer_turbo": "vllm", "gpu_memory_utilization": 0.90,
        "limit_worker_concurrency": 100, "max_gpu_memory": "44GiB", "max_model_len": 32768, "port": 20002,
        "sizing": worker["sizing"],
    }
    # 46068 MiB x 0.90 = 41461.2 MiB; 6.24e9 x 2 bytes = 11901.9 MiB of weights (rounded up to 11902);
    # 41461.2 - 11901.9 - 1024 MiB reserve = 28535.3 MiB left for the KV cache.
    assert worker["sizing"]["weights_mib"] == 11902
    assert worker["sizing"]["kv_cache_mib"] == 28535


@pytest.mark.parametrize(("gpus", "group", "expected"), [
    # 46068 MiB x 0.90 - 26e9 B - 1 GiB = 16401123532 B / 819200 B = 20020 tokens -> 20016 (blocks of 16).
    pytest.param(L40, "l40", 20016, id="1xL40"),
    # 40960 MiB x 0.95 - 26e9 B - 1 GiB = 13728447488 B / 819200 B = 16758 tokens -> 16752.
    pytest.param(A100_40G, "a100", 16752, id="1xA100-40G"),
    # 81920 MiB x 0.95 - 26e9 B - 1 GiB = 54530636800 B / 819200 B = 66565 tokens: the model's 65536 fit.
    pytest.param(A100_80G, "a100", 65536, id="1xA100-80G"),
])
def test_max_model_len_is_what_the_kv_cache_of_the_gpu_holds(gpus: list[dict[str, Any]], group: str,
                                                             expected: int) -> None:
    (worker,) = profiles(gpus, YARN_13B, group_profile(group))
    assert worker["max_model_len"] == expected
    assert worker["gpu_memory_utilization"] == group_profile(group)["gpu_memory_utilization"]
    assert (worker["num_gpus"], worker["tensor_parallel_size"], worker["cuda_visible_devices"]) == (1, 1, "0")


def test_one_a100_80g_carries_the_a100_profile() -> None:
    (worker,) = profiles(A100_80G, CHATGLM3, group_profile("a100"))
    assert {key: worker[key] for key in ("max_num_batched_tokens", "max_num_seqs", "max_paddings",
                                         "gpu_memory_utilization", "limit_worker_concurrency", "worker_use_ray")} == {
        "max_num_batched_tokens": None, "max_num_seqs": 512, "max_paddings": 256,
        "gpu_memory_utilization": 0.95, "limit_worker_concurrency": 300, "worker_use_ray": False}
    assert worker["max_model_len"] == 32768


def test_eight_a100_80g_make_one_worker_with_tensor_parallelism_eight() -> None:
    # The a100 profile says num_gpus 1 and tensor_parallel_size 1 (the POC's one GPU): on eight GPUs
    # both are derived from the worker's GPUs, never left at the profile's value.
    assert group_profile("a100")["tensor_parallel_size"] == 1
    (worker,) = profiles(A100_80G_X8, LLAMA2_70B, group_profile("a100"))
    assert worker["gpus"] == list(range(8))
    assert worker["cuda_visible_devices"] == "0,1,2,3,4,5,6,7"
    assert (worker["num_gpus"], worker["tensor_parallel_size"]) == (8, 8)
    # 138e9 B of weights over 8 GPUs: 16450.9 MiB each, rounded up.
    assert worker["sizing"]["weights_mib"] == 16451
    assert worker["max_model_len"] == 4096
    assert worker["max_num_seqs"] == 512


def test_profile_values_the_filter_derives_give_way() -> None:
    # startup.py's trap: num_gpus 4 makes tensor_parallel_size 4. A profile carrying it, or a port or
    # a max_model_len, does not reach a one-GPU worker.
    profile = {**group_profile("l40"), "num_gpus": 4, "tensor_parallel_size": 4, "max_model_len": 999999, "port": 1}
    (worker,) = profiles(L40, CHATGLM3, profile)
    assert (worker["num_gpus"], worker["tensor_parallel_size"], worker["max_model_len"], worker["port"]) == (1, 1, 32768, 20002)


def test_two_workers_on_four_gpus() -> None:
    four = A100_80G_X8[:4]
    workers = [{"name": "left", "gpus": [0, 1]}, {"name": "right", "gpus": [2, 3]}]
    left, right = profiles(four, YARN_13B, group_profile("a100"), workers)
    assert (left["name"], left["gpus"], left["cuda_visible_devices"], left["port"]) == ("left", [0, 1], "0,1", 20002)
    assert (right["name"], right["gpus"], right["cuda_visible_devices"], right["port"]) == ("right", [2, 3], "2,3", 20003)
    for worker in (left, right):
        assert (worker["num_gpus"], worker["tensor_parallel_size"]) == (2, 2)
        assert worker["model"] == "Yarn-Llama-2-13b-64k"
        # Half the weights per GPU: 26e9 B / 2 = 12398 MiB.
        assert worker["sizing"]["weights_mib"] == 12398


def test_four_workers_on_eight_gpus_get_consecutive_ports_and_may_set_their_own() -> None:
    workers = [{"name": f"w{n}", "gpus": [2 * n, 2 * n + 1]} for n in range(4)]
    workers[3]["port"] = 21000
    result = profiles(A100_80G_X8, CHATGLM3, group_profile("a100"), workers, base_port=20010)
    assert [w["port"] for w in result] == [20010, 20011, 20012, 21000]
    assert [w["cuda_visible_devices"] for w in result] == ["0,1", "2,3", "4,5", "6,7"]


def test_gpus_of_one_worker_need_not_be_contiguous_and_keep_their_order() -> None:
    (worker,) = profiles(A100_80G_X8, CHATGLM3, group_profile("a100"), [{"name": "odd", "gpus": [7, 1]}])
    assert worker["gpus"] == [7, 1]
    assert worker["cuda_visible_devices"] == "7,1"


def test_replicated_kv_heads_are_counted_per_gpu() -> None:
    # chatglm3 has 2 key/value groups: on 4 GPUs vLLM keeps one group per GPU (replicated), so a GPU
    # holds half the model's KV bytes per token, not a quarter.
    four = A100_80G_X8[:4]
    grouped = profiles(four, CHATGLM3, group_profile("a100"))[0]["sizing"]["kv_cache_tokens"]
    unknown = profiles(four, {**CHATGLM3, "num_key_value_heads": None}, group_profile("a100"))[0]
    assert unknown["sizing"]["kv_cache_tokens"] // 2 - 16 <= grouped <= unknown["sizing"]["kv_cache_tokens"] // 2


def test_without_kv_size_only_the_weights_are_checked() -> None:
    model = {"name": "Yarn-Llama-2-13b-64k", "params_b": 13.0, "max_model_len": 65536}
    (worker,) = profiles(L40, model, group_profile("l40"))
    assert worker["max_model_len"] == 65536
    assert worker["sizing"]["kv_cache_tokens"] is None


def test_inputs_are_not_changed() -> None:
    profile, gpus, model = group_profile("a100"), copy.deepcopy(A100_80G_X8), dict(LLAMA2_70B)
    overrides = {"all": {"limit_worker_concurrency": 10}}
    profiles(gpus, model, profile, None, overrides)
    assert profile == group_profile("a100")
    assert gpus == A100_80G_X8
    assert model == LLAMA2_70B
    assert overrides == {"all": {"limit_worker_concurrency": 10}}


# --- Overrides win, and are still checked ------------------------------------------------------

def test_overrides_win_per_worker_over_all_over_derived_over_profile() -> None:
    four = A100_80G_X8[:4]
    workers = [{"name": "left", "gpus": [0, 1]}, {"name": "right", "gpus": [2, 3]}]
    overrides = {
        "all": {"limit_worker_concurrency": 200, "gpu_memory_utilization": 0.85, "max_model_len": 16384},
        "right": {"limit_worker_concurrency": 50, "max_model_len": 8192, "port": 20102, "max_num_seqs": 64},
    }
    left, right = profiles(four, YARN_13B, group_profile("a100"), workers, overrides)
    assert (left["limit_worker_concurrency"], left["max_model_len"], left["port"], left["max_num_seqs"]) == (200, 16384, 20002, 512)
    assert (right["limit_worker_concurrency"], right["max_model_len"], right["port"], right["max_num_seqs"]) == (50, 8192, 20102, 64)
    assert left["gpu_memory_utilization"] == right["gpu_memory_utilization"] == 0.85
    assert left["sizing"]["usable_mib"] == int(81920 * 0.85)


def test_an_override_equal_to_what_is_derived_is_accepted() -> None:
    (worker,) = profiles(A100_80G_X8, LLAMA2_70B, group_profile("a100"), None,
                         {"all": {"tensor_parallel_size": 8, "num_gpus": 8}})
    assert worker["tensor_parallel_size"] == 8


@pytest.mark.parametrize(("tp", "fragment"), [
    (3, "tensor_parallel_size 3 does not divide its 4 GPU(s)"),
    (2, "tensor_parallel_size 2 would leave 2 of its 4 GPUs idle"),
    (8, "tensor_parallel_size 8 is more than its 4 GPU(s)"),
])
def test_tensor_parallel_size_that_does_not_match_the_gpus_fails(tp: int, fragment: str) -> None:
    message = failure(A100_80G_X8[:4], CHATGLM3, group_profile("a100"), [{"name": "big", "gpus": [0, 1, 2, 3]}],
                      {"big": {"tensor_parallel_size": tp}})
    assert "worker big" in message
    assert fragment in message
    assert "chatchat_vllm_overrides.big.tensor_parallel_size" in message


def test_num_gpus_must_equal_tensor_parallel_size() -> None:
    message = failure(A100_80G_X8[:4], CHATGLM3, group_profile("a100"), None, {"all": {"num_gpus": 1}})
    assert "num_gpus 1 differs from tensor_parallel_size 4" in message
    assert "chatchat_vllm_overrides.all.num_gpus" in message


def test_attention_heads_must_divide_by_the_gpus_of_a_worker() -> None:
    message = failure(A100_80G_X8, LLAMA2_70B, group_profile("a100"), [{"name": "three", "gpus": [0, 1, 2]}])
    assert "worker three: the model's 64 attention heads do not divide by tensor_parallel_size 3" in message
    assert "chatchat_vllm_workers" in message


def test_key_value_heads_must_divide_or_be_a_multiple_of_the_gpus() -> None:
    model = {**LLAMA2_70B, "num_attention_heads": 40}
    message = failure(A100_80G_X8, model, group_profile("a100"), [{"name": "five", "gpus": [0, 1, 2, 3, 4]}])
    assert "8 key/value heads and tensor_parallel_size 5 do not divide one another" in message


@pytest.mark.parametrize("value", [0, 1.2, -0.5, "0.9", True])
def test_gpu_memory_utilization_must_be_in_zero_one(value: Any) -> None:
    message = failure(L40, CHATGLM3, {**group_profile("l40"), "gpu_memory_utilization": value})
    assert f"gpu_memory_utilization {json.dumps(value)} must be in (0, 1]: fix chatchat_fschat_model_workers_default" in message


def test_gpu_memory_utilization_override_is_named() -> None:
    message = failure(L40, CHATGLM3, group_profile("l40"), None, {"chatglm3-6b-32k": {"gpu_memory_utilization": 1.5}})
    assert "gpu_memory_utilization 1.5 must be in (0, 1]: fix chatchat_vllm_overrides.chatglm3-6b-32k.gpu_memory_utilization" in message


def test_max_model_len_override_longer_than_the_kv_cache_fails() -> None:
    message = failure(L40, YARN_13B, group_profile("l40"), None, {"all": {"max_model_len": 32768}})
    assert "max_model_len 32768 does not fit: the KV cache holds 20016 tokens" in message
    assert "chatchat_vllm_overrides.all.max_model_len" in message


def test_max_model_len_override_longer_than_the_model_fails() -> None:
    message = failure(A100_80G, CHATGLM3, group_profile("a100"), None, {"all": {"max_model_len": 65536}})
    assert "max_model_len 65536 is longer than the model's 32768" in message


# --- Bad input the issue names -----------------------------------------------------------------

def test_a_34b_model_over_commits_one_l40() -> None:
    message = failure(L40, YI_34B, group_profile("l40"))
    assert "worker Yi-34B-Chat: the model Yi-34B-Chat over-commits GPU memory" in message
    # 34.4e9 x 2 B = 65612.8 MiB (rounded up) against 46068 MiB x 0.90 = 41461.2 MiB.
    assert "65613 MiB of weights per GPU" in message
    assert "do not fit in 41461 MiB" in message
    assert "chatchat_vllm_workers" in message and "chatchat_fschat_model_workers_default" in message


def test_a_70b_model_over_commits_one_a100_80g_but_fits_on_two() -> None:
    assert "over-commits GPU memory" in failure(A100_80G_X8, LLAMA2_70B, group_profile("a100"),
                                                [{"name": "one", "gpus": [0]}])
    (worker,) = profiles(A100_80G_X8, LLAMA2_70B, group_profile("a100"), [{"name": "two", "gpus": [0, 1]}])
    assert worker["tensor_parallel_size"] == 2


def test_a_lower_utilization_override_can_over_commit() -> None:
    profiles(L40, YARN_13B, group_profile("l40"))
    message = failure(L40, YARN_13B, group_profile("l40"), None, {"all": {"gpu_memory_utilization": 0.5}})
    assert "over-commits GPU memory" in message
    assert "chatchat_vllm_overrides.all.gpu_memory_utilization" in message


def test_a_kv_cache_too_small_for_min_model_len_fails() -> None:
    # 13B on an L40 at 0.62: 28562 MiB usable - 24796 MiB weights - 1024 MiB = 2742 MiB = 3509 tokens.
    profile = {**group_profile("l40"), "gpu_memory_utilization": 0.62}
    assert profiles(L40, YARN_13B, profile)[0]["max_model_len"] < 4096
    message = failure(L40, YARN_13B, profile, min_model_len=4096)
    assert "worker Yarn-Llama-2-13b-64k: only" in message and "under the minimum 4096" in message


def test_a_gpu_in_two_workers_fails() -> None:
    message = failure(A100_80G_X8[:4], CHATGLM3, group_profile("a100"),
                      [{"name": "left", "gpus": [0, 1]}, {"name": "right", "gpus": [1, 2]}])
    assert "chatchat_vllm_workers worker right: GPU 1 is already in worker left" in message


def test_a_gpu_listed_twice_in_one_worker_fails() -> None:
    message = failure(A100_80G_X8, CHATGLM3, group_profile("a100"), [{"name": "w", "gpus": [0, 0]}])
    assert "GPU 0 is listed twice" in message


@pytest.mark.parametrize(("gpus", "fragment"), [
    ([8], "GPU 8 is not on this host (gpu_preflight_gpus has [0, 1, 2, 3, 4, 5, 6, 7])"),
    (["0"], 'GPU "0" is not on this host'),
    ([], "gpus must be a non-empty list of GPU indexes, got []"),
    (None, "gpus must be a non-empty list of GPU indexes, got null"),
])
def test_unknown_or_missing_gpus_of_a_worker_fail(gpus: Any, fragment: str) -> None:
    message = failure(A100_80G_X8, CHATGLM3, group_profile("a100"), [{"name": "w", "gpus": gpus}])
    assert "chatchat_vllm_workers worker w" in message
    assert fragment in message


def test_a_port_used_by_two_workers_fails() -> None:
    workers = [{"name": "left", "gpus": [0], "port": 20010}, {"name": "right", "gpus": [1], "port": 20010}]
    message = failure(A100_80G_X8, CHATGLM3, group_profile("a100"), workers)
    assert "worker right: port 20010 is already used by worker left: fix chatchat_vllm_workers" in message


def test_a_port_override_for_all_workers_collides() -> None:
    workers = [{"name": "left", "gpus": [0]}, {"name": "right", "gpus": [1]}]
    message = failure(A100_80G_X8, CHATGLM3, group_profile("a100"), workers, {"all": {"port": 20050}})
    assert "worker right: port 20050 is already used by worker left: fix chatchat_vllm_overrides.all.port" in message


def test_a_port_of_another_service_fails() -> None:
    message = failure(L40, CHATGLM3, group_profile("l40"), taken_ports=TAKEN, base_port=20001)
    assert "port 20001 is already used by another service of this host" in message
    assert profiles(L40, CHATGLM3, group_profile("l40"), taken_ports=TAKEN)[0]["port"] == 20002


@pytest.mark.parametrize("port", [0, 70000, "20002"])
def test_a_port_out_of_range_fails(port: Any) -> None:
    message = failure(L40, CHATGLM3, group_profile("l40"), [{"name": "w", "gpus": [0], "port": port}])
    assert "must be an integer in 1-65535: fix chatchat_vllm_workers" in message


def test_overrides_for_an_unknown_worker_fail() -> None:
    message = failure(L40, CHATGLM3, group_profile("l40"), None, {"chatglm3": {"max_model_len": 4096}})
    assert "chatchat_vllm_overrides.chatglm3: no worker is named chatglm3 (workers: chatglm3-6b-32k" in message


def test_overrides_cannot_move_gpus() -> None:
    message = failure(L40, CHATGLM3, group_profile("l40"), None, {"all": {"gpus": [0]}})
    assert "chatchat_vllm_overrides.all cannot set gpus" in message


@pytest.mark.parametrize(("workers", "fragment"), [
    ([{"name": "w", "gpus": [0]}, {"name": "w", "gpus": [1]}], "worker w appears twice"),
    ([{"name": "all", "gpus": [0]}], "name \"all\" must match"),
    ([{"name": "a b", "gpus": [0]}], "name \"a b\" must match"),
    ([{"name": "w", "gpus": [0], "max_model_len": 4096}], "worker w: unknown field(s) max_model_len"),
    ("w", "chatchat_vllm_workers must be a list"),
])
def test_bad_workers_fail(workers: Any, fragment: str) -> None:
    assert fragment in failure(A100_80G_X8, CHATGLM3, group_profile("a100"), workers)


@pytest.mark.parametrize(("model", "fragment"), [
    ({**CHATGLM3, "params_b": 0}, "params_b must be a positive number, not 0"),
    ({**CHATGLM3, "dtype_bytes": "fp16"}, 'dtype_bytes must be a positive number, not "fp16"'),
    ({k: v for k, v in CHATGLM3.items() if k != "max_model_len"}, "max_model_len (the model's context length) must be"),
    ({**CHATGLM3, "layers": 28}, "chatchat_vllm_model has unknown field(s) layers"),
    ({**CHATGLM3, "name": ""}, "chatchat_vllm_model.name must be the model's name"),
    ("chatglm3-6b-32k", "chatchat_vllm_model must be a mapping"),
])
def test_bad_models_fail(model: Any, fragment: str) -> None:
    assert fragment in failure(L40, model, group_profile("l40"))


@pytest.mark.parametrize(("gpus", "fragment"), [
    ([], "gpu_preflight_gpus must be the non-empty GPU list"),
    (None, "gpu_preflight_gpus must be the non-empty GPU list"),
    ([{"index": 0, "name": "NVIDIA L40", "memory_mib": "46068"}], "gpu_preflight_gpus[0] must have an integer index"),
    (L40 + L40, "gpu_preflight_gpus lists GPU index 0 twice"),
])
def test_bad_gpu_lists_fail(gpus: Any, fragment: str) -> None:
    assert fragment in failure(gpus, CHATGLM3, group_profile("l40"))


def test_a_profile_that_is_not_a_mapping_fails() -> None:
    assert "chatchat_fschat_model_workers_default must be a mapping" in failure(L40, CHATGLM3, ["vllm"])


# --- Plugin shape --------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["DOCUMENTATION", "EXAMPLES", "RETURN"])
def test_the_filter_is_documented(block: str) -> None:
    docs = yaml.safe_load(getattr(plugin, block))
    assert set(docs) == set(FILTERS)
    for name in FILTERS:
        if block == "DOCUMENTATION":
            assert docs[name]["name"] == name
            assert docs[name]["short_description"]
            assert set(inspect.signature(FILTERS[name]).parameters) - {"gpus"} | {"_input"} == set(docs[name]["options"])
        elif block == "RETURN":
            assert docs[name]["_value"]["type"] == "list"
        else:
            assert f"| {name}" in docs[name]
            yaml.safe_load(docs[name])


def test_the_filter_has_type_hints() -> None:
    for func in FILTERS.values():
        hints = inspect.get_annotations(func)
        assert "return" in hints and len(hints) == len(inspect.signature(func).parameters) + 1


def test_gpus_per_worker_splits_eight_a100_into_eight_workers_of_one_gpu() -> None:
    workers = profiles(A100_80G_X8, CHATGLM3, group_profile("a100"), gpus_per_worker=1)
    assert [w["name"] for w in workers] == [f"chatglm3-6b-32k-{n}" for n in range(8)]
    assert [w["gpus"] for w in workers] == [[n] for n in range(8)]
    assert {(w["num_gpus"], w["tensor_parallel_size"]) for w in workers} == {(1, 1)}
    assert [w["port"] for w in workers] == list(range(20002, 20010))


def test_gpus_per_worker_covering_every_gpu_keeps_the_model_name() -> None:
    (worker,) = profiles(L40, CHATGLM3, group_profile("l40"), gpus_per_worker=1)
    assert worker["name"] == "chatglm3-6b-32k"


@pytest.mark.parametrize("per_worker", [3, 0, -1, "2", True])
def test_gpus_per_worker_must_divide_the_gpus(per_worker: Any) -> None:
    with pytest.raises(AnsibleFilterError, match="chatchat_vllm_gpus_per_worker"):
        profiles(A100_80G_X8, CHATGLM3, group_profile("a100"), gpus_per_worker=per_worker)


def test_explicit_workers_win_over_gpus_per_worker() -> None:
    workers = profiles(A100_80G_X8, CHATGLM3, group_profile("a100"), [{"name": "all-eight", "gpus": list(range(8))}],
                                   gpus_per_worker=1)
    assert [(w["name"], w["tensor_parallel_size"]) for w in workers] == [("all-eight", 8)]


# --- max_gpu_memory: derived from the GPUs, explicit values win ----------------------------------

@pytest.mark.parametrize("inventory", ["lab", "prod"])
@pytest.mark.parametrize(("gpus", "group", "expected"), [
    pytest.param(L40, "l40", "44GiB", id="1xL40-46068MiB"),
    pytest.param(A100_80G, "a100", "80GiB", id="1xA100-80G"),
    pytest.param(A100_40G, "a100", "40GiB", id="1xA100-40G"),
])
def test_max_gpu_memory_is_the_gpu_memory_in_whole_gib(inventory: str, gpus: list[dict[str, Any]], group: str,
                                                       expected: str) -> None:
    """The issue: the inventories' 80GiB was handed to a 40 GB A100 (and to a 46068 MiB L40)."""
    text = (ROOT / "inventories" / inventory / "group_vars" / group / "chatchat.yml").read_text(encoding="utf-8")
    (worker,) = profiles(gpus, CHATGLM3, yaml.safe_load(text)["chatchat_fschat_model_workers_default"])
    assert worker["max_gpu_memory"] == expected


def test_max_gpu_memory_of_a_worker_is_its_smallest_gpu() -> None:
    mixed = [A100_80G_X8[0], dict(A100_80G_X8[1], memory_mib=40960)]
    (worker,) = profiles(mixed, CHATGLM3, group_profile("a100"))
    assert worker["max_gpu_memory"] == "40GiB"
    left, right = profiles(mixed, CHATGLM3, group_profile("a100"), gpus_per_worker=1)
    assert (left["max_gpu_memory"], right["max_gpu_memory"]) == ("80GiB", "40GiB")


def test_an_explicit_max_gpu_memory_wins_profile_then_all_then_worker() -> None:
    profile = {**group_profile("a100"), "max_gpu_memory": "70GiB"}
    assert [w["max_gpu_memory"] for w in profiles(A100_80G_X8[:2], CHATGLM3, profile, gpus_per_worker=1)] == ["70GiB"] * 2
    overrides = {"all": {"max_gpu_memory": "60GiB"}, "chatglm3-6b-32k-1": {"max_gpu_memory": "50000MiB"}}
    workers = profiles(A100_80G_X8[:2], CHATGLM3, profile, overrides=overrides, gpus_per_worker=1)
    assert [w["max_gpu_memory"] for w in workers] == ["60GiB", "50000MiB"]
    # null: FastChat's own default (fschat_worker_argv leaves a null out of the command line).
    (worker,) = profiles(A100_40G, CHATGLM3, {**group_profile("a100"), "max_gpu_memory": None})
    assert worker["max_gpu_memory"] is None


@pytest.mark.parametrize(("profile_value", "overrides", "source"), [
    pytest.param("80GiB", None, "chatchat_fschat_model_workers_default", id="profile"),
    pytest.param(None, {"all": {"max_gpu_memory": "41GiB"}}, "chatchat_vllm_overrides.all.max_gpu_memory", id="all"),
    pytest.param(None, {"chatglm3-6b-32k": {"max_gpu_memory": "44GB"}},
                 "chatchat_vllm_overrides.chatglm3-6b-32k.max_gpu_memory", id="worker"),
])
def test_a_max_gpu_memory_larger_than_the_gpu_fails(profile_value: Any, overrides: Any, source: str) -> None:
    profile = dict(group_profile("a100"))
    if profile_value is not None:
        profile["max_gpu_memory"] = profile_value
    message = failure(A100_40G, CHATGLM3, profile, None, overrides)
    assert "worker chatglm3-6b-32k: max_gpu_memory" in message
    assert "is more than the 40960 MiB of its smallest GPU" in message
    assert f'set at most "40GiB" in {source}' in message


@pytest.mark.parametrize("value", ["40G", "40 GiB", "39.5GiB", 40, "forty", ""])
def test_a_max_gpu_memory_accelerate_cannot_read_fails(value: Any) -> None:
    message = failure(A100_40G, CHATGLM3, {**group_profile("a100"), "max_gpu_memory": value})
    assert "must be a whole number followed by GiB, MiB, GB or MB" in message
    assert "fix chatchat_fschat_model_workers_default" in message


@pytest.mark.parametrize("value", ["40GiB", "40960MiB", "42GB", "41943040KiB"])
def test_a_max_gpu_memory_that_fits_is_kept(value: str) -> None:
    (worker,) = profiles(A100_40G, CHATGLM3, {**group_profile("a100"), "max_gpu_memory": value})
    assert worker["max_gpu_memory"] == value


# --- vllm_busy_gpus: other processes holding the workers' GPUs ------------------------------------

def workers_on(recording: str, group: str, **kwargs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gpus = recorded_gpus(recording, usage=True)
    return gpus, profiles(gpus, CHATGLM3, group_profile(group), **kwargs)


def test_the_busy_a100_fails_naming_the_gpu_the_memory_and_the_process() -> None:
    """The a100x1 recording: python3 (pid 2471) holds 77852 MiB; a 0.95 worker needs 77824 MiB free."""
    gpus, workers = workers_on("a100x1", "a100")
    (message,) = busy_gpus(gpus, workers)
    assert message.startswith("worker chatglm3-6b-32k: GPU 0 (NVIDIA A100-SXM4-80GB) has 77860 MiB of 81920 MiB in use")
    assert "python3 (pid 2471, 77852 MiB)" in message
    assert "4060 MiB are left, less than the worker's share of 77824 MiB (gpu_memory_utilization 0.95 x 81920 MiB)" in message
    assert "Stop those processes, or lower gpu_memory_utilization to at most 0.04 in " \
           "chatchat_vllm_overrides.chatglm3-6b-32k (or chatchat_vllm_overrides.all)" in message
    assert "no process nvidia-smi lists" not in message  # 8 MiB of driver use are not worth a word


@pytest.mark.parametrize("own_pids", [[2471], ["2471"], [1, 2471]])
def test_the_busy_a100_passes_when_the_process_is_our_own_worker(own_pids: list[Any]) -> None:
    """A rerun on a serving node: the process is this project's worker (run by chatchat_user)."""
    gpus, workers = workers_on("a100x1", "a100")
    assert busy_gpus(gpus, workers, own_pids) == []


@pytest.mark.parametrize(("recording", "group", "kwargs"), [
    ("l40x1", "l40", {}),
    ("a100x8", "a100", {}),
    ("a100x8", "a100", {"gpus_per_worker": 1}),
    ("old-driver", "a100", {}),
])
def test_idle_gpus_pass(recording: str, group: str, kwargs: dict[str, Any]) -> None:
    gpus, workers = workers_on(recording, group, **kwargs)
    assert busy_gpus(gpus, workers) == []


def test_the_suggested_utilization_fits() -> None:
    gpus = recorded_gpus("a100x1", usage=True)
    worker = {"name": "small", "gpus": [0], "infer_turbo": "vllm"}
    assert busy_gpus(gpus, [{**worker, "gpu_memory_utilization": 0.04}]) == []
    assert len(busy_gpus(gpus, [{**worker, "gpu_memory_utilization": 0.05}])) == 1


def test_memory_no_listed_process_holds_counts() -> None:
    """Another container's processes are not in the table, but their memory is in use all the same."""
    (gpu,) = recorded_gpus("a100x1", usage=True)
    hidden = [{**gpu, "processes": []}]
    (message,) = busy_gpus(hidden, [{"name": "w", "gpus": [0], "infer_turbo": "vllm", "gpu_memory_utilization": 0.95}])
    assert "77860 MiB held by no process nvidia-smi lists" in message


def test_only_the_memory_of_other_processes_counts_beside_our_own() -> None:
    own = {"pid": 100, "type": "C", "name": "python", "used_mib": 70000}
    other = {"pid": 200, "type": "C", "name": "jupyter", "used_mib": 9000}
    gpu = dict(A100_80G_X8[0], memory_used_mib=79004, processes=[own, other])
    worker = {"name": "w", "gpus": [0], "infer_turbo": "vllm", "gpu_memory_utilization": 0.95}
    (message,) = busy_gpus([gpu], [worker], [100])
    assert "9004 MiB of it held by processes that are not this project's workers: jupyter (pid 200, 9000 MiB)" in message
    assert "python (pid 100" not in message
    assert busy_gpus([gpu], [{**worker, "gpu_memory_utilization": 0.85}], [100]) == []


def test_without_the_memory_in_use_the_listed_processes_count() -> None:
    """A table whose Memory-Usage cell shows N/A: the other processes' own figures are what is known."""
    (gpu,) = recorded_gpus("a100x1", usage=True)
    worker = {"name": "w", "gpus": [0], "infer_turbo": "vllm", "gpu_memory_utilization": 0.95}
    (message,) = busy_gpus([{**gpu, "memory_used_mib": None}], [worker])
    assert "has 81920 MiB (nvidia-smi shows no total in use), 77852 MiB of it held by" in message
    assert busy_gpus([{**gpu, "memory_used_mib": None}], [worker], [2471]) == []


def test_only_the_gpus_of_the_workers_are_checked() -> None:
    gpus = recorded_gpus("a100x8", usage=True)
    gpus[5] = dict(gpus[5], memory_used_mib=80000, processes=[{"pid": 7, "type": "C", "name": "train.py", "used_mib": 79996}])
    workers = profiles(gpus, CHATGLM3, group_profile("a100"), [{"name": "left", "gpus": [0, 1]}, {"name": "right", "gpus": [4, 5]}])
    (message,) = busy_gpus(gpus, workers)
    assert message.startswith("worker right: GPU 5 ") and "train.py (pid 7, 79996 MiB)" in message
    assert busy_gpus(gpus, workers[:1]) == []


def test_a_plain_model_worker_is_not_checked() -> None:
    """FastChat's plain model_worker (the lab's CPU workers) has no gpu_memory_utilization share."""
    gpus, workers = workers_on("a100x1", "a100", overrides={"all": {"infer_turbo": False}})
    assert busy_gpus(gpus, workers) == []


def test_gpus_without_usage_fail_asking_for_gpu_preflight() -> None:
    with pytest.raises(AnsibleFilterError, match="vllm_busy_gpus: gpu_preflight_gpus GPU 0 has no .*run the gpu_preflight"):
        busy_gpus(L40, profiles(L40, CHATGLM3, group_profile("l40")))


@pytest.mark.parametrize(("gpus", "workers", "own_pids", "fragment"), [
    (None, [], [], "gpu_preflight_gpus must be the GPU list"),
    (L40, None, [], "workers must be the list from vllm_worker_profiles"),
    (L40, [{"name": "w", "gpus": [1], "infer_turbo": "vllm", "gpu_memory_utilization": 0.9}], [], "worker w: GPU 1 is not in gpu_preflight_gpus"),
    (L40, [{"name": "w", "gpus": [0], "infer_turbo": "vllm", "gpu_memory_utilization": 1.5}], [], "gpu_memory_utilization 1.5 must be in (0, 1]"),
    (L40, [], ["pid"], "own_pids must be process ids"),
])
def test_busy_gpus_bad_inputs_fail(gpus: Any, workers: Any, own_pids: Any, fragment: str) -> None:
    with pytest.raises(AnsibleFilterError) as raised:
        busy_gpus(gpus, workers, own_pids)
    assert fragment in str(raised.value)
