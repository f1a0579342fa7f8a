"""What the services run after a run with tags, and with a proxy in systemd's manager environment.

Runs after test_site_operations.py (file order), on the L40 node of the converged site. The nodes share
the host's network, so the test reaches the node's services on 127.0.0.1 directly.
"""
from __future__ import annotations

import json
import shlex
import time
import urllib.request

import yaml
from testlib import ROOT, docker_exec, run_playbook

NODE = "site-l40-1"
OPENAI_API = "http://127.0.0.1:20000/v1"
API = "http://127.0.0.1:7861"
MODEL_CONFIG = "/opt/chatchat/current/configs/model_config.py"
ENV_PYTHON = "/opt/chatchat/envs/0.2.8/bin/python"
# python_env's default pins (roles/python_env/defaults/main.yml), and a package the lab mirror serves
# that the env does not hold.
PROJECT_PINS = yaml.safe_load((ROOT / "roles" / "python_env" / "defaults" / "main.yml").read_text())["python_env_packages"]
ADDED_PACKAGE = "setuptools_scm"
DEAD_PROXY = "http://127.0.0.1:9"


def main_pids() -> dict[str, str]:
    units = docker_exec(NODE, "systemctl", "list-units", "--plain", "--no-legend", "chatchat-*.service").stdout
    return {name: docker_exec(NODE, "systemctl", "show", "-p", "MainPID", "--value", name).stdout.strip()
            for name in (line.split()[0] for line in units.splitlines() if line.strip())}


def started_after_written(unit: str, path: str) -> bool:
    """The unit's process started after the file was last written, so it read the file as it is now."""
    # /proc/<pid> is made when the process starts (the node image has no procps).
    out = docker_exec(NODE, "bash", "-c", f"stat -c %Y /proc/$(systemctl show -p MainPID --value {unit}) {path}").stdout.split()
    return int(out[0]) >= int(out[1])


# Connects to Milvus as the API server would: with that process's environment and kb_config's settings.
MILVUS_AS_THE_API = """
import os, subprocess
pid = subprocess.check_output(["systemctl", "show", "-p", "MainPID", "--value", "chatchat-api.service"], text=True).strip()
with open("/proc/%s/environ" % pid) as handle:
    environ = dict(item.split("=", 1) for item in handle.read().split("\\0") if "=" in item)
os.environ.clear()
os.environ.update(environ)
import configs
from pymilvus import connections, utility
conf = configs.kbs_config["milvus"]
connections.connect(host=conf["host"], port=conf["port"], user=conf["user"], password=conf["password"], timeout=20)
print(utility.get_server_version())
"""


def chat_completion_tokens() -> int:
    request = urllib.request.Request(
        f"{OPENAI_API}/chat/completions", headers={"Content-Type": "application/json"},
        data=json.dumps({"model": "tiny-gpt2", "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "hello"}]}).encode())
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)["usage"]["completion_tokens"]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def api_answer(path: str, seconds: float = 120) -> dict:
    """The API server's answer at `path`, once it listens: the real v0.2.8 API imports the app for
    several seconds after systemd has started it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return get_json(f"{API}{path}")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def listed_models() -> list[str]:
    """The models openai_api lists; none while it is not listening yet (a unit that systemd has just
    started has not always opened its port)."""
    try:
        return [model["id"] for model in get_json(f"{OPENAI_API}/models")["data"]]
    except OSError:
        return []


def test_a_run_with_tags_restarts_every_unit_on_an_env_change_and_each_reads_the_new_config():
    """`--tags chatchat,python_env` with a config change and one more package in the env (a project pin
    added; the mirror serves it) restarts every unit: each runs the env's python, so each must run on
    the env as it is now, and the units that import the configs start after the new config was
    written. (Which units a config change alone restarts is the chatchat_services scenario's
    config-change test.)"""
    before = main_pids()
    assert docker_exec(NODE, ENV_PYTHON, "-c", f"import {ADDED_PACKAGE}", check=False).returncode != 0
    run = run_playbook("site.yml", "--tags", "chatchat,python_env", "--limit", NODE,
                       extra_vars={"chatchat_temperature": 0.55, "python_env_packages": [*PROJECT_PINS, ADDED_PACKAGE]})
    assert run.rc == 0, run
    assert "TEMPERATURE = 0.55" in docker_exec(NODE, "cat", MODEL_CONFIG).stdout
    assert docker_exec(NODE, ENV_PYTHON, "-c", f"import {ADDED_PACKAGE}", check=False).returncode == 0
    after = main_pids()
    assert set(after) == set(before)
    assert [unit for unit in before if after[unit] == before[unit]] == [], (before, after)
    for unit in ("chatchat-api.service", "chatchat-webui.service"):
        assert started_after_written(unit, MODEL_CONFIG), unit


def test_a_proxy_in_the_service_managers_environment_does_not_carry_the_services_calls():
    # As a corporate image does it (or DefaultEnvironment= in system.conf): every unit started from now on
    # gets this proxy, where nothing listens.
    docker_exec(NODE, "systemctl", "set-environment", f"http_proxy={DEAD_PROXY}", f"HTTP_PROXY={DEAD_PROXY}",
                f"https_proxy={DEAD_PROXY}", f"all_proxy={DEAD_PROXY}")
    try:
        # Restart the stack in its start order: each worker's pre-start check probes the controller,
        # the workers register with it, the API reaches openai_api and Milvus.
        for unit in ("chatchat-controller", "chatchat-openai-api", "chatchat-worker-tiny-gpt2", "chatchat-api"):
            restarted = docker_exec(NODE, "timeout", "200", "systemctl", "restart", f"{unit}.service", check=False)
            assert restarted.returncode == 0, (unit, restarted.stderr,
                                               docker_exec(NODE, "journalctl", "-u", unit, "-n", "30", check=False).stdout)
        # Every unit serves: the worker registered (openai_api lists its model), a chat completion
        # through the worker returns tokens, the API answers.
        deadline = time.monotonic() + 180  # a restarted worker registers once its model is loaded
        while listed_models() != ["tiny-gpt2"]:
            assert time.monotonic() < deadline, docker_exec(NODE, "journalctl", "-u", "chatchat-worker-tiny-gpt2",
                                                            "-u", "chatchat-openai-api", "-n", "30", check=False).stdout
            time.sleep(2)
        assert chat_completion_tokens() > 0
        assert api_answer("/knowledge_base/list_knowledge_bases")["code"] == 200
        # The proxy did reach the services (read once the API answers: its process has long been exec'd).
        api_environ = docker_exec(NODE, "bash", "-c", "cat /proc/$(systemctl show -p MainPID --value chatchat-api.service)/environ")
        assert f"http_proxy={DEAD_PROXY}" in api_environ.stdout.split("\0")
        # Milvus through the env's pymilvus (gRPC honours the proxy variables), in the API process's environment.
        milvus = docker_exec(NODE, "bash", "-c", f"cd /opt/chatchat/current && {ENV_PYTHON} -c {shlex.quote(MILVUS_AS_THE_API)}",
                             check=False)
        assert milvus.returncode == 0, milvus.stderr[-2000:]
    finally:
        docker_exec(NODE, "systemctl", "unset-environment", "http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy")
