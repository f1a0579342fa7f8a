"""The systemd units of one Chatchat host: what each runs, listens on, waits for and is checked with.

The chatchat_services role templates one unit per item of chatchat_service_units' result, in
start order, and health-gates them in that order. Keeping the plan here (pure Python) lets the unit
tests check both launch modes without a host.

A worker unit runs the FastChat module its profile picks: fastchat.serve.vllm_worker (infer_turbo
"vllm") or fastchat.serve.model_worker (infer_turbo false); fschat_worker_argv says which flag each
of the profile's keys (Chatchat's FSCHAT_MODEL_WORKERS keys, which startup.py reads from
server_config.py) becomes, and systemd_exec_line writes an argv as one Exec*= line.

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
chatchat_service_units:
  name: chatchat_service_units
  short_description: The systemd units (in start order) of a Chatchat host
  description:
    - "launch_mode fastchat: chatchat-controller (fastchat.serve.controller), one chatchat-worker-<name> per
      worker (fastchat.serve.vllm_worker or model_worker, see fschat_worker_argv), chatchat-openai-api
      (fastchat.serve.openai_api_server), chatchat-api (server/api.py) and chatchat-webui (streamlit run webui.py)."
    - "launch_mode startup: the POC's startup.py, one mode per unit: chatchat-openai-api (-o: controller and
      openai_api), chatchat-worker-<name> (-m -n <model>; one worker per model), chatchat-api (--api),
      chatchat-webui (-w)."
    - Fails on a bad mode, a worker name that cannot name a unit, a port used twice, or (startup) two workers of one model.
  positional: _input
  options:
    _input:
      description:
        - "The host's settings: launch_mode, python, app_dir, model_root, workers, device, bind_host,
          advertise_host, ports (controller, openai_api, api, webui), dispatch_method, webui (bool)."
      type: dict
      required: true
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
chatchat_service_units: |
  # {{ {'launch_mode': 'fastchat', 'python': '/opt/chatchat/envs/0.2.8/bin/python', ...} | chatchat_service_units }}
fschat_worker_argv: |
  # ExecStart={{ worker | fschat_worker_argv(env ~ '/bin/python', '/opt/chatchat/models/chatglm3-6b-32k',
  #             'http://127.0.0.1:20001', '127.0.0.1', '0.0.0.0') | systemd_exec_line }}
systemd_exec_line: |
  # {{ ['/bin/echo', 'a b', '100%'] | systemd_exec_line }} -> /bin/echo "a b" 100%%
"""

RETURN = r"""
chatchat_service_units:
  _value:
    description:
      - "One dict per unit: name, description, argv, ports, app (runs in app_dir and imports the configs),
        model (a worker's model, else null), environment, gpu (needs the GPU devices), after, health
        ({url, method})."
    type: list
    elements: dict
fschat_worker_argv:
  _value: {description: "The argv: python, -m, the module, then its flags.", type: list, elements: str}
systemd_exec_line:
  _value: {description: The command line., type: str}
"""

UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MODES = ("fastchat", "startup")
REQUIRED = ("launch_mode", "python", "app_dir", "model_root", "workers", "device", "bind_host",
            "advertise_host", "ports", "dispatch_method", "webui")


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


def _worker_fail(message: str) -> AnsibleFilterError:
    return AnsibleFilterError("fschat_worker_argv: " + message)


def fschat_worker_argv(worker: dict[str, Any], python: str, model_path: str, controller_address: str,
                       advertise_host: str, bind_host: str, device: str = "cuda") -> list[str]:
    """The worker's argv: the module its infer_turbo picks, the addresses, then one flag per tuning key."""
    if not isinstance(worker, dict) or "name" not in worker or "port" not in worker or "model" not in worker:
        raise _worker_fail(f"expected a worker profile with name, model and port, got {worker!r}")
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
            raise _worker_fail(f"worker {worker['name']}: device {device!r} is not one of {', '.join(PLAIN_DEVICES)}")
        argv += ["--device", device]
    for key in sorted(worker):
        value = worker[key]
        if key in NOT_FLAGS or value is None:
            continue
        if key not in accepted:
            if key in other:
                continue
            raise _worker_fail(f"worker {worker['name']}: {key} is not an argument of {VLLM_MODULE} or {PLAIN_MODULE}: "
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

def _fail(message: str) -> AnsibleFilterError:
    return AnsibleFilterError("chatchat_service_units: " + message)


def _unit(name: str, description: str, argv: list[str], ports: list[int], health: dict[str, str], *,
          app: bool, after: list[str], model: str | None = None, environment: dict[str, str] | None = None,
          gpu: bool = False) -> dict[str, Any]:
    return {"name": name, "description": description, "argv": argv, "ports": ports, "health": health, "app": app,
            "after": after, "model": model, "environment": environment or {}, "gpu": gpu}


def chatchat_service_units(host: dict[str, Any]) -> list[dict[str, Any]]:
    """The units of one host in start order (controller, workers, openai_api, API, WebUI)."""
    if not isinstance(host, dict):
        raise _fail(f"expected a mapping of settings, got {host!r}")
    missing = [key for key in REQUIRED if key not in host]
    if missing:
        raise _fail(f"missing settings: {', '.join(missing)}")
    mode = host["launch_mode"]
    if mode not in MODES:
        raise _fail(f"chatchat_services_launch_mode must be one of {', '.join(MODES)}, not {mode!r}")
    workers = host["workers"]
    if not isinstance(workers, list) or not workers:
        raise _fail("chatchat_services_workers is empty: pass the chatchat role's chatchat_model_workers")
    python, app_dir, ports = host["python"], host["app_dir"].rstrip("/"), host["ports"]
    reach = host["advertise_host"]
    controller = f"http://{reach}:{ports['controller']}"

    owner: dict[int, str] = {}

    def claim(port: Any, who: str) -> int:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _fail(f"{who}: port {port!r} must be an integer in 1-65535")
        if port in owner:
            raise _fail(f"port {port} is used twice on this host: by {owner[port]} and by {who}")
        owner[port] = who
        return port

    for service in ("controller", "openai_api", "api") + (("webui",) if host["webui"] else ()):
        claim(ports[service], f"chatchat_services_{service}_port")

    worker_units = []
    seen_models: dict[str, str] = {}
    for worker in workers:
        name = worker.get("name") if isinstance(worker, dict) else None
        if not isinstance(name, str) or not UNIT_NAME.match(name):
            raise _fail(f"worker name {name!r} cannot name a systemd unit (allowed: {UNIT_NAME.pattern})")
        port = claim(worker.get("port"), f"worker {name}")
        model = worker["model"]
        if mode == "startup" and model in seen_models:
            raise _fail(f"launch mode startup runs one worker per model, but workers {seen_models[model]} and {name} "
                        f"both serve {model}: use launch mode fastchat, or one worker (chatchat_vllm_workers)")
        seen_models.setdefault(model, name)
        vllm = worker.get("infer_turbo") == "vllm"
        gpu = bool(worker.get("cuda_visible_devices")) and (vllm or host["device"] == "cuda")
        environment = {"CUDA_VISIBLE_DEVICES": worker.get("cuda_visible_devices", "")}
        health = {"url": f"http://{reach}:{port}/worker_get_status", "method": "POST"}
        if mode == "fastchat":
            argv = fschat_worker_argv(worker, python, f"{host['model_root'].rstrip('/')}/{model}", controller,
                                      reach, host["bind_host"], host["device"])
        else:
            argv = [python, "startup.py", "-m", "-n", model]
        worker_units.append(_unit(f"chatchat-worker-{name}", f"Chatchat model worker {name} ({model})", argv,
                                  [port], health, app=mode == "startup", model=model, environment=environment,
                                  gpu=gpu, after=["chatchat-controller" if mode == "fastchat" else "chatchat-openai-api"]))

    openai_health = {"url": f"http://{reach}:{ports['openai_api']}/v1/models", "method": "GET"}
    if mode == "fastchat":
        units = [_unit("chatchat-controller", "FastChat controller",
                       [python, "-m", "fastchat.serve.controller", "--host", host["bind_host"],
                        "--port", str(ports["controller"]), "--dispatch-method", host["dispatch_method"]],
                       [ports["controller"]],
                       {"url": f"{controller}/test_connection", "method": "GET"}, app=False, after=[])]
        units += worker_units
        units.append(_unit("chatchat-openai-api", "FastChat OpenAI-compatible API server",
                           [python, "-m", "fastchat.serve.openai_api_server", "--host", host["bind_host"],
                            "--port", str(ports["openai_api"]), "--controller-address", controller],
                           [ports["openai_api"]], openai_health, app=False, after=["chatchat-controller"]))
        api_argv = [python, "server/api.py", "--host", host["bind_host"], "--port", str(ports["api"])]
        webui_argv = [python, "-m", "streamlit", "run", "webui.py", "--server.address", host["bind_host"],
                      "--server.port", str(ports["webui"]), "--server.headless", "true",
                      "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
                      "--theme.base", "light"]
    else:
        units = [_unit("chatchat-openai-api", "Chatchat startup.py -o (FastChat controller and OpenAI API server)",
                       [python, "startup.py", "-o"], [ports["controller"], ports["openai_api"]], openai_health,
                       app=True, after=[])]
        units += worker_units
        api_argv = [python, "startup.py", "--api"]
        webui_argv = [python, "startup.py", "-w"]
    units.append(_unit("chatchat-api", "Chatchat API server", api_argv, [ports["api"]],
                       {"url": f"http://{reach}:{ports['api']}/knowledge_base/list_knowledge_bases", "method": "GET"},
                       app=True, after=["chatchat-openai-api"]))
    if host["webui"]:
        units.append(_unit("chatchat-webui", "Chatchat WebUI (streamlit)", webui_argv, [ports["webui"]],
                           {"url": f"http://{reach}:{ports['webui']}/_stcore/health", "method": "GET"},
                           app=True, after=["chatchat-api"]))
    for unit in units:
        unit["ports"] = sorted(unit["ports"])
    return units


class FilterModule:
    """Chatchat unit plan and command line filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"chatchat_service_units": chatchat_service_units, "fschat_worker_argv": fschat_worker_argv,
                "systemd_exec_line": systemd_exec_line}
