"""Turn a derived model worker profile into the FastChat worker's command line (for a systemd unit).

One worker profile (from vllm_worker_profiles) holds Chatchat's FSCHAT_MODEL_WORKERS keys. Chatchat's
startup.py reads the same keys from server_config.py; the chatchat_services role starts the worker
module directly, so these filters say which flag each key becomes for the module the profile picks:
fastchat.serve.vllm_worker (infer_turbo "vllm") or fastchat.serve.model_worker (infer_turbo false).

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
fschat_worker_argv:
  name: fschat_worker_argv
  short_description: The argv of a FastChat 0.2.33 model worker from a worker profile
  description:
    - "The module is fastchat.serve.vllm_worker when the profile's infer_turbo is C(vllm), else
      fastchat.serve.model_worker (with --device)."
    - Keys that describe the worker (name, model, gpus, cuda_visible_devices, sizing, infer_turbo, port,
      host, device) are not flags; a key that only the other module reads (a vLLM key on a plain
      worker, max_gpu_memory on a vLLM worker) is left out; a key neither module knows fails, naming it.
    - "Booleans become a bare flag when true; null values are left out."
  positional: _input, python, model_path, controller_address, advertise_host, bind_host, device
  options:
    _input: {description: One worker profile (an item of vllm_worker_profiles' result)., type: dict, required: true}
    python: {description: The environment's Python interpreter., type: str, required: true}
    model_path: {description: The model's directory on the host., type: str, required: true}
    controller_address: {description: "The controller's URL, for example http://127.0.0.1:20001.", type: str, required: true}
    advertise_host: {description: The address the controller reaches the worker at (its --worker-address)., type: str, required: true}
    bind_host: {description: The address the worker listens on., type: str, required: true}
    device: {description: "The plain model worker's --device (cpu, cuda, mps, xpu, npu).", type: str, default: cuda}
systemd_exec_line:
  name: systemd_exec_line
  short_description: An argv as one systemd Exec*= command line
  description:
    - Quotes each argument that needs it and escapes C($) and C(%) so systemd passes every argument unchanged.
  positional: _input
  options:
    _input: {description: The argv., type: list, elements: str, required: true}
"""

EXAMPLES = r"""
fschat_worker_argv: |
  # ExecStart={{ worker | fschat_worker_argv(env ~ '/bin/python', '/opt/chatchat/models/chatglm3-6b-32k',
  #             'http://127.0.0.1:20001', '127.0.0.1', '0.0.0.0') | systemd_exec_line }}
systemd_exec_line: |
  # {{ ['/bin/echo', 'a b', '100%'] | systemd_exec_line }} -> /bin/echo "a b" 100%%
"""

RETURN = r"""
fschat_worker_argv:
  _value: {description: "The argv: python, -m, the module, then its flags.", type: list, elements: str}
systemd_exec_line:
  _value: {description: The command line., type: str}
"""

VLLM_MODULE = "fastchat.serve.vllm_worker"
PLAIN_MODULE = "fastchat.serve.model_worker"
# Keys that describe the worker or are passed apart from the profile's tuning.
NOT_FLAGS = {"name", "model", "gpus", "cuda_visible_devices", "sizing", "infer_turbo", "port", "host", "device"}
# Flags each module accepts, by profile key (FastChat 0.2.33 and vLLM 0.2.2's engine arguments).
SHARED_FLAGS = {"num_gpus", "limit_worker_concurrency", "conv_template"}
VLLM_FLAGS = SHARED_FLAGS | {
    "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "max_num_batched_tokens", "max_num_seqs",
    "max_paddings", "swap_space", "block_size", "dtype", "seed", "quantization", "worker_use_ray",
    "engine_use_ray", "disable_log_stats", "disable_log_requests", "trust_remote_code", "tokenizer_mode",
}
PLAIN_FLAGS = SHARED_FLAGS | {"max_gpu_memory", "load_8bit", "cpu_offloading", "stream_interval", "dtype"}
PLAIN_DEVICES = ("cpu", "cuda", "mps", "xpu", "npu")
SAFE_ARG = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def _fail(message: str) -> AnsibleFilterError:
    return AnsibleFilterError("fschat_worker_argv: " + message)


def fschat_worker_argv(worker: dict[str, Any], python: str, model_path: str, controller_address: str,
                       advertise_host: str, bind_host: str, device: str = "cuda") -> list[str]:
    """The worker's argv: the module its infer_turbo picks, the addresses, then one flag per tuning key."""
    if not isinstance(worker, dict) or "name" not in worker or "port" not in worker or "model" not in worker:
        raise _fail(f"expected a worker profile with name, model and port, got {worker!r}")
    vllm = worker.get("infer_turbo") == "vllm"
    accepted, other = (VLLM_FLAGS, PLAIN_FLAGS) if vllm else (PLAIN_FLAGS, VLLM_FLAGS)
    port = worker["port"]
    argv = [python, "-m", VLLM_MODULE if vllm else PLAIN_MODULE,
            "--host", bind_host, "--port", str(port),
            "--worker-address", f"http://{advertise_host}:{port}",
            "--controller-address", controller_address,
            "--model-path", model_path, "--model-names", worker["model"]]
    if not vllm:
        if device not in PLAIN_DEVICES:
            raise _fail(f"worker {worker['name']}: device {device!r} is not one of {', '.join(PLAIN_DEVICES)}")
        argv += ["--device", device]
    for key in sorted(worker):
        value = worker[key]
        if key in NOT_FLAGS or value is None:
            continue
        if key not in accepted:
            if key in other:
                continue
            raise _fail(f"worker {worker['name']}: {key} is not an argument of {VLLM_MODULE} or {PLAIN_MODULE}: "
                        "remove it from chatchat_fschat_model_workers_default or chatchat_vllm_overrides")
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            continue
        argv += [flag, str(value)]
    return argv


def systemd_exec_line(argv: list[str]) -> str:
    """One Exec*= line: $ and % escaped everywhere, arguments with other characters double-quoted."""
    if not isinstance(argv, list) or not argv:
        raise AnsibleFilterError(f"systemd_exec_line: expected a non-empty argv list, got {argv!r}")
    words = []
    for arg in argv:
        text = str(arg).replace("%", "%%").replace("$", "$$")
        if not SAFE_ARG.match(str(arg)):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(text)
    return " ".join(words)


class FilterModule:
    """FastChat worker command line filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"fschat_worker_argv": fschat_worker_argv, "systemd_exec_line": systemd_exec_line}
