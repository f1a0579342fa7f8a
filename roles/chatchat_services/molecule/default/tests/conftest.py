"""Shared values of the chatchat_services scenario (the lab a100 group_vars) and helpers on the node."""
from __future__ import annotations

import json
import textwrap
import time

NODE = "services-a100"
PYTHON = "/opt/chatchat/envs/0.2.8/bin/python"
RELEASE = "/opt/chatchat/current"
USER = "chatchat"
MODEL = "tiny-gpt2"
# The scenario's ports (host_vars/services-a100.yml) and the lab A100 node's two CPU workers
# (inventories/lab/group_vars/a100/chatchat.yml).
PORTS = {"openai_api": 31000, "controller": 31001, "api": 18861, "webui": 19501}
WORKERS = {"tiny-gpt2-0": (31002, "0"), "tiny-gpt2-1": (31003, "1")}
UNITS = (["chatchat-controller"] + [f"chatchat-worker-{name}" for name in WORKERS]
         + ["chatchat-openai-api", "chatchat-api", "chatchat-webui"])
# The process each unit's MainPID must be (a fragment of its command line).
MAIN_PROCESS = {"chatchat-controller": "-m fastchat.serve.controller",
                "chatchat-worker-tiny-gpt2-0": "-m fastchat.serve.model_worker",
                "chatchat-worker-tiny-gpt2-1": "-m fastchat.serve.model_worker",
                "chatchat-openai-api": "-m fastchat.serve.openai_api_server",
                "chatchat-api": "server/api.py",
                "chatchat-webui": "-m streamlit run webui.py"}


def http(host, url: str, method: str = "GET", body: object | None = None, timeout: float = 120) -> tuple[int, str]:
    """(status, body) of one request made on the node (its system python3), 0 when nothing answered."""
    script = textwrap.dedent(f"""
        import json, sys, urllib.request, urllib.error
        data = {json.dumps(json.dumps(body)) if body is not None else 'None'}
        request = urllib.request.Request({url!r}, method={method!r},
                                         data=data.encode() if data is not None else None,
                                         headers={{"Content-Type": "application/json"}})
        try:
            with urllib.request.urlopen(request, timeout={timeout}) as answer:
                print(answer.status); print(answer.read().decode())
        except urllib.error.HTTPError as error:
            print(error.code); print(error.read().decode())
        except OSError as error:
            print(0); print(error)
    """)
    result = host.run(f"python3 - <<'EOF'\n{script}\nEOF")
    status, _, text = result.stdout.partition("\n")
    return int(status or 0), text.strip()


def show(host, unit: str, *properties: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {unit}.service " + " ".join(f"-p {p}" for p in properties))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def main_pids(host) -> dict[str, str]:
    return {unit: show(host, unit, "MainPID")["MainPID"] for unit in UNITS}


def chat(host, port: int = PORTS["openai_api"], max_tokens: int = 16) -> dict:
    """A greedy chat completion (temperature 0: a sampled first token can end the answer at once)."""
    status, text = http(host, f"http://127.0.0.1:{port}/v1/chat/completions", "POST",
                        {"model": MODEL, "messages": [{"role": "user", "content": "hello"}],
                         "max_tokens": max_tokens, "temperature": 0})
    assert status == 200, text
    return json.loads(text)


def wait_models_listed(host, timeout: float = 240) -> float:
    """Seconds until the openai_api server lists the model (its workers registered)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status, text = http(host, f"http://127.0.0.1:{PORTS['openai_api']}/v1/models", timeout=5)
        if status == 200 and MODEL in [m["id"] for m in json.loads(text)["data"]]:
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"{MODEL} not listed by openai_api within {timeout} s")


def wait_units_active(host, timeout: float = 180) -> None:
    """Wait until every unit is active: after a boot they start side by side, and one that needs
    the controller may still be in its pre-start wait (or a restart) when the models are listed."""
    deadline = time.monotonic() + timeout
    while True:
        states = {unit: show(host, unit, "ActiveState", "SubState", "NRestarts") for unit in UNITS}
        if all(state["ActiveState"] == "active" for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not every unit active within {timeout} s: {states}")
        time.sleep(2)
