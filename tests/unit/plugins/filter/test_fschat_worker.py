"""fschat_worker_argv and systemd_exec_line (filter_plugins/chatchat_units.py) over worker profiles derived from the recorded GPUs."""
from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_filters", ROOT / "filter_plugins" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


worker_filters = _load("chatchat_units")
argv_of = worker_filters["fschat_worker_argv"]
exec_line = worker_filters["systemd_exec_line"]
profiles = _load("vllm_worker_profiles")["vllm_worker_profiles"]
nvidia_smi_gpus = _load("nvidia_smi")["nvidia_smi_gpus"]
RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"
CHATGLM3 = {"name": "chatglm3-6b-32k", "params_b": 6.24, "max_model_len": 32768,
            "kv_bytes_per_token": 2 * 28 * 2 * 128 * 2, "num_attention_heads": 32, "num_key_value_heads": 2}
PY = "/opt/chatchat/envs/0.2.8/bin/python"
MODEL = "/opt/chatchat/models/chatglm3-6b-32k"
CONTROLLER = "http://127.0.0.1:20001"


def worker(recording: str, group: str, **kwargs: Any) -> list[dict[str, Any]]:
    gpus = nvidia_smi_gpus((RECORDINGS / recording / "query-gpu.csv").read_text(encoding="utf-8"))
    profile = yaml.safe_load((ROOT / "inventories" / "prod" / "group_vars" / group / "chatchat.yml").read_text())
    return profiles(gpus, CHATGLM3, profile["chatchat_fschat_model_workers_default"], **kwargs)


def flags(argv: list[str]) -> dict[str, str | bool]:
    """--key value pairs (True for a bare flag) after the module name."""
    out: dict[str, str | bool] = {}
    rest = argv[3:]
    for position, word in enumerate(rest):
        if word.startswith("--"):
            following = rest[position + 1] if position + 1 < len(rest) else "--"
            out[word] = True if following.startswith("--") else following
    return out


def test_the_l40_profile_becomes_vllm_worker_flags() -> None:
    (l40,) = worker("l40x1", "l40")
    argv = argv_of(l40, PY, MODEL, CONTROLLER, "127.0.0.1", "0.0.0.0")
    assert argv[:3] == [PY, "-m", "fastchat.serve.vllm_worker"]
    got = flags(argv)
    assert got["--gpu-memory-utilization"] == "0.9"
    assert got["--limit-worker-concurrency"] == "100"
    assert got["--tensor-parallel-size"] == got["--num-gpus"] == "1"
    assert got["--max-model-len"] == str(l40["max_model_len"])
    assert got["--port"] == "20002" and got["--worker-address"] == "http://127.0.0.1:20002"
    assert got["--model-path"] == MODEL and got["--model-names"] == "chatglm3-6b-32k"
    assert got["--controller-address"] == CONTROLLER and got["--host"] == "0.0.0.0"
    # max_gpu_memory is the plain worker's; vLLM 0.2.2 has no such flag.
    assert "--max-gpu-memory" not in got and "--device" not in got and "--infer-turbo" not in got


def test_the_a100_profile_carries_the_poc_values_and_leaves_out_nulls_and_false() -> None:
    workers = worker("a100x8", "a100", gpus_per_worker=1)
    assert len(workers) == 8
    got = flags(argv_of(workers[3], PY, MODEL, CONTROLLER, "127.0.0.1", "0.0.0.0"))
    assert got["--max-num-seqs"] == "512" and got["--max-paddings"] == "256"
    assert got["--gpu-memory-utilization"] == "0.95" and got["--limit-worker-concurrency"] == "300"
    assert got["--tensor-parallel-size"] == "1" and got["--port"] == "20005"
    assert "--max-num-batched-tokens" not in got  # null in the profile
    assert "--worker-use-ray" not in got  # false


def test_a_plain_worker_gets_the_device_and_not_the_vllm_keys() -> None:
    (l40,) = worker("l40x1", "l40", overrides={"all": {"infer_turbo": False, "conv_template": "raw"}})
    argv = argv_of(l40, PY, MODEL, CONTROLLER, "127.0.0.1", "127.0.0.1", "cpu")
    assert argv[2] == "fastchat.serve.model_worker"
    got = flags(argv)
    assert got["--device"] == "cpu" and got["--conv-template"] == "raw" and got["--max-gpu-memory"] == "44GiB"
    assert "--gpu-memory-utilization" not in got and "--tensor-parallel-size" not in got


def test_a_true_boolean_is_a_bare_flag() -> None:
    (l40,) = worker("l40x1", "l40", overrides={"all": {"worker_use_ray": True, "swap_space": 8}})
    argv = argv_of(l40, PY, MODEL, CONTROLLER, "127.0.0.1", "0.0.0.0")
    assert "--worker-use-ray" in argv and flags(argv)["--swap-space"] == "8"
    following = argv[argv.index("--worker-use-ray") + 1:]
    assert not following or following[0].startswith("--")


def test_an_unknown_key_fails_naming_it_and_the_variables() -> None:
    (l40,) = worker("l40x1", "l40", overrides={"all": {"gpu_memory_utilisation": 0.8}})
    with pytest.raises(AnsibleFilterError, match="gpu_memory_utilisation.*chatchat_vllm_overrides"):
        argv_of(l40, PY, MODEL, CONTROLLER, "127.0.0.1", "0.0.0.0")


def test_a_plain_worker_refuses_an_unknown_device() -> None:
    (l40,) = worker("l40x1", "l40", overrides={"all": {"infer_turbo": False}})
    with pytest.raises(AnsibleFilterError, match="device 'auto'"):
        argv_of(l40, PY, MODEL, CONTROLLER, "127.0.0.1", "0.0.0.0", "auto")


def test_exec_line_keeps_every_argument() -> None:
    argv = ["/bin/echo", "plain", "two words", 'a "quote"', "back\\slash", "100%", "$HOME", "0.95"]
    line = exec_line(argv)
    assert line.startswith("/bin/echo plain ")
    # systemd undoes %% and $$; the quoting is then the shell's double-quote rules.
    assert shlex.split(line.replace("%%", "%").replace("$$", "$")) == argv


def test_exec_line_refuses_an_empty_argv() -> None:
    with pytest.raises(AnsibleFilterError):
        exec_line([])
