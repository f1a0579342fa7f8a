"""What both test modules know about the node: the venv standing in for the Chatchat env and fschat's worker file."""
from __future__ import annotations

ENV = "/opt/chatchat/envs/0.2.8"
PYTHON = f"{ENV}/bin/python"
BUGGY = "stop=list(stop),"
FIXED = 'stop=[i for i in stop if i != ""],'
FIND = (
    "import importlib.util, os; "
    "print(os.path.join(importlib.util.find_spec('fastchat').submodule_search_locations[0], 'serve', 'vllm_worker.py'))"
)


def worker_path(host) -> str:
    """fastchat/serve/vllm_worker.py in the env, as the env's own Python finds it."""
    return host.check_output(f'{PYTHON} -c "{FIND}"')
