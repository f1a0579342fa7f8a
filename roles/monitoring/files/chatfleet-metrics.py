#!/usr/bin/python3
"""Write a node's Chatchat and GPU metrics for node_exporter's textfile collector.

Run by chatfleet-metrics.service (a timer, the unprivileged user chatfleet-metrics). Reads the node's services
record (the chatchat_services role writes it), asks systemd, the services' health URLs, the
openai_api server and nvidia-smi, and replaces <textfile dir>/chatfleet.prom in one rename, so that
node_exporter never reads half a file. Standard library only: it runs with the OS's python3.

Every metric it writes is listed in METRICS (name, type, help); tests check the alert rules and the
dashboard against that list.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

METRICS = {
    "chatfleet_probe_success": ("gauge", "1 when the probe read the services record and wrote every metric it could."),
    "chatfleet_probe_duration_seconds": ("gauge", "How long the probe took."),
    "chatfleet_probe_timestamp_seconds": ("gauge", "When the probe ran (Unix time)."),
    "chatfleet_unit_up": ("gauge", "1 when the unit's ActiveState is active."),
    "chatfleet_unit_restarts": ("gauge", "systemd's NRestarts of the unit (automatic restarts since it was started)."),
    "chatfleet_service_healthy": ("gauge", "1 when the unit's health URL answered with a 2xx status."),
    "chatfleet_model_listed": ("gauge", "1 when the openai_api server lists the served model."),
    "chatfleet_chat_completion_success": ("gauge", "1 when a chat completion through the openai_api server succeeded."),
    "chatfleet_chat_completion_seconds": ("gauge", "Latency of the probe's chat completion."),
    "chatfleet_chat_completion_tokens": ("gauge", "Completion tokens of the probe's chat completion."),
    "chatfleet_release_info": ("gauge", "The active Chatchat release (label release)."),
    "chatfleet_model_revision_info": ("gauge", "The active revision of each served model."),
    "chatfleet_fschat_info": ("gauge", "The env's fschat version, and whether fschat_patch patched vllm_worker.py."),
    "chatfleet_gpu_info": ("gauge", "One per GPU: name, UUID and the driver version."),
    "chatfleet_gpu_utilization_ratio": ("gauge", "GPU utilisation (0-1)."),
    "chatfleet_gpu_memory_used_bytes": ("gauge", "GPU memory used."),
    "chatfleet_gpu_memory_total_bytes": ("gauge", "GPU memory total."),
    "chatfleet_gpu_temperature_celsius": ("gauge", "GPU temperature."),
    "chatfleet_gpu_power_watts": ("gauge", "GPU power draw."),
    "chatfleet_gpu_ecc_errors_uncorrected": ("gauge", "Uncorrected volatile ECC errors."),
}
GPU_FIELDS = ("index,uuid,name,driver_version,utilization.gpu,memory.used,memory.total,temperature.gpu,"
              "power.draw,ecc.errors.uncorrected.volatile.total")
MIB = 1024 * 1024


class Metrics:
    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}

    def add(self, metric: str, value: float, **labels: str) -> None:
        if metric not in METRICS:
            raise KeyError(f"{metric} is not in METRICS")
        self.samples.setdefault(metric, []).append((labels, float(value)))

    def render(self) -> str:
        lines = []
        for name in METRICS:
            if name not in self.samples:
                continue
            kind, text = METRICS[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in self.samples[name]:
                rendered = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
                lines.append(f"{name}{{{rendered}}} {_number_text(value)}" if rendered else f"{name} {_number_text(value)}")
        return "\n".join(lines) + "\n"


def _number_text(value: float) -> str:
    """Every digit (bytes need more than %g's six), integers without a fraction."""
    return str(int(value)) if value.is_integer() else repr(value)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _request(url: str, timeout: float, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    # The services answer on the node itself: no proxy, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (OSError, ValueError):
        return 0, b""


def _unit_state(unit: str) -> tuple[bool, int]:
    done = subprocess.run(["systemctl", "show", f"{unit}.service", "--property=ActiveState,NRestarts"],
                          capture_output=True, text=True, check=False)
    props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    restarts = props.get("NRestarts", "0")
    return props.get("ActiveState") == "active", int(restarts) if restarts.isdigit() else 0


def services(metrics: Metrics, record: dict, timeout: float, completion: bool) -> None:
    for unit in record.get("units", []):
        up, restarts = _unit_state(unit["name"])
        metrics.add("chatfleet_unit_up", up, unit=unit["name"])
        metrics.add("chatfleet_unit_restarts", restarts, unit=unit["name"])
        health = unit.get("health") or {}
        if health.get("url"):
            status, _ = _request(health["url"], timeout, health.get("method", "GET"))
            metrics.add("chatfleet_service_healthy", 200 <= status < 300, unit=unit["name"])
    openai_api = record.get("openai_api", "").rstrip("/")
    models = record.get("models", [])
    listed: set[str] = set()
    if openai_api:
        status, body = _request(openai_api + "/models", timeout)
        if status == 200:
            try:
                listed = {entry.get("id") for entry in json.loads(body).get("data", [])}
            except ValueError:
                listed = set()
    for model in models:
        metrics.add("chatfleet_model_listed", model in listed, model=model)
        if not completion or not openai_api:
            continue
        started = time.monotonic()
        status, body = _request(openai_api + "/chat/completions", timeout, "POST",
                                {"model": model, "max_tokens": 8, "temperature": 0,
                                 "messages": [{"role": "user", "content": "ping"}]})
        seconds = time.monotonic() - started
        tokens = None
        if status == 200:
            try:
                tokens = json.loads(body).get("usage", {}).get("completion_tokens")
            except ValueError:
                tokens = None
        metrics.add("chatfleet_chat_completion_success", status == 200 and tokens is not None, model=model)
        if status == 200 and tokens is not None:
            metrics.add("chatfleet_chat_completion_seconds", round(seconds, 3), model=model)
            metrics.add("chatfleet_chat_completion_tokens", tokens, model=model)


def versions(metrics: Metrics, app_dir: str, models_root: str, env_path: str, models: list[str]) -> None:
    if os.path.exists(app_dir):
        metrics.add("chatfleet_release_info", 1, release=os.path.basename(os.path.realpath(app_dir)))
    for model in models:
        path = os.path.join(models_root, model)
        if os.path.islink(path):
            metrics.add("chatfleet_model_revision_info", 1, model=model,
                        revision=os.path.basename(os.path.realpath(path)))
    lib = os.path.join(env_path, "lib")
    for python in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
        site = os.path.join(lib, python, "site-packages")
        dists = [name for name in os.listdir(site) if name.startswith("fschat-") and name.endswith(".dist-info")] \
            if os.path.isdir(site) else []
        if dists:
            version = dists[0][len("fschat-"):-len(".dist-info")]
            worker = os.path.join(site, "fastchat", "serve", "vllm_worker.py")
            # fschat_patch keeps the original beside the file it patched (vllm_worker.py.orig-<version>).
            patched = os.path.exists(f"{worker}.orig-{version}")
            metrics.add("chatfleet_fschat_info", 1, version=version, patched=str(patched).lower())
            return


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # [N/A], [Not Supported]


def gpus(metrics: Metrics, nvidia_smi: str) -> bool:
    done = subprocess.run([nvidia_smi, f"--query-gpu={GPU_FIELDS}", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return False
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split(", ")]
        if len(fields) != len(GPU_FIELDS.split(",")):
            return False
        index, uuid, name, driver, util, used, total, temperature, power, ecc = fields
        metrics.add("chatfleet_gpu_info", 1, gpu=index, uuid=uuid, name=name, driver=driver)
        for metric, value, scale in (("chatfleet_gpu_utilization_ratio", util, 0.01),
                                     ("chatfleet_gpu_memory_used_bytes", used, MIB),
                                     ("chatfleet_gpu_memory_total_bytes", total, MIB),
                                     ("chatfleet_gpu_temperature_celsius", temperature, 1),
                                     ("chatfleet_gpu_power_watts", power, 1),
                                     ("chatfleet_gpu_ecc_errors_uncorrected", ecc, 1)):
            number = _number(value)
            if number is not None:
                metrics.add(metric, number * scale, gpu=index)
    return True


def write_atomically(directory: str, text: str) -> None:
    handle, staged = tempfile.mkstemp(prefix=".chatfleet-", suffix=".prom.tmp", dir=directory)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(staged, 0o644)
    os.replace(staged, os.path.join(directory, "chatfleet.prom"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textfile-dir", required=True)
    parser.add_argument("--services-record", default="")
    parser.add_argument("--app-dir", default="")
    parser.add_argument("--models-root", default="")
    parser.add_argument("--env-path", default="")
    parser.add_argument("--nvidia-smi", default="", help="nvidia-smi's path; empty: no GPU metrics")
    parser.add_argument("--completion", action="store_true", help="a chat completion per served model")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args(argv)
    started = time.monotonic()
    metrics = Metrics()
    ok = True
    if args.services_record:
        try:
            with open(args.services_record, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError) as error:
            print(f"chatfleet-metrics: cannot read {args.services_record}: {error}", file=sys.stderr)
            record, ok = {}, False
        services(metrics, record, args.timeout, args.completion)
        versions(metrics, args.app_dir, args.models_root, args.env_path, record.get("models", []))
    if args.nvidia_smi and not gpus(metrics, args.nvidia_smi):
        print(f"chatfleet-metrics: {args.nvidia_smi} gave no GPU metrics", file=sys.stderr)
        ok = False
    metrics.add("chatfleet_probe_success", ok)
    metrics.add("chatfleet_probe_duration_seconds", round(time.monotonic() - started, 3))
    metrics.add("chatfleet_probe_timestamp_seconds", int(time.time()))
    write_atomically(args.textfile_dir, metrics.render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
