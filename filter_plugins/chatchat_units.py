"""The systemd units of one Chatchat host: what each runs, listens on, waits for and is checked with.

The chatchat_services role templates one unit per item of chatchat_service_units' result, in
start order, and health-gates them in that order. Keeping the plan here (pure Python) lets the unit
tests check both launch modes without a host.

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import importlib.util
import os
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
"""

EXAMPLES = r"""
chatchat_service_units: |
  # {{ {'launch_mode': 'fastchat', 'python': '/opt/chatchat/envs/0.2.8/bin/python', ...} | chatchat_service_units }}
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
"""

UNIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MODES = ("fastchat", "startup")
REQUIRED = ("launch_mode", "python", "app_dir", "model_root", "workers", "device", "bind_host",
            "advertise_host", "ports", "dispatch_method", "webui")


def _load_worker_filter() -> Callable[..., list[str]]:
    """fschat_worker_argv from the sibling plugin file (filter plugins are not an importable package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fschat_worker.py")
    spec = importlib.util.spec_from_file_location("chatfleet_fschat_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fschat_worker_argv


fschat_worker_argv = _load_worker_filter()


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
    """Chatchat unit plan filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"chatchat_service_units": chatchat_service_units}
