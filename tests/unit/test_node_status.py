"""playbooks/files/chatfleet-node-status.py over a node-shaped directory tree (env, models, release)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("node_status", ROOT / "playbooks" / "files" / "chatfleet-node-status.py")
node_status = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(node_status)


def make_env(tmp_path: Path, worker_text: str | None, version: str = "0.2.33") -> Path:
    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    (site / f"fschat-{version}.dist-info").mkdir(parents=True)
    if worker_text is not None:
        (site / "fastchat" / "serve").mkdir(parents=True)
        (site / "fastchat" / "serve" / "vllm_worker.py").write_text(worker_text)
    return tmp_path / "env"


@pytest.mark.parametrize(("text", "state"), [
    ('        sampling_params = SamplingParams(\n            stop=[i for i in stop if i != ""],\n', "patched"),
    ("        sampling_params = SamplingParams(\n            stop=list(stop),\n", "NOT patched"),
    ("        stop = set(stop)  # 0.2.36\n", "not needed"),
    (None, "vllm_worker.py missing"),
])
def test_fschat_version_and_patch_state(tmp_path, text, state):
    found = node_status.fschat(str(make_env(tmp_path, text)))
    assert found["version"] == "0.2.33" and found["patch"].startswith(state)


def test_no_fschat_in_the_env(tmp_path):
    assert node_status.fschat(str(tmp_path)) == {"version": None, "patch": "fschat not installed"}


def test_model_revisions_come_from_the_links(tmp_path):
    store = tmp_path / "models" / ".revisions" / "tiny-gpt2" / ("a" * 40)
    store.mkdir(parents=True)
    (tmp_path / "models" / "tiny-gpt2").symlink_to(store)
    (tmp_path / "models" / "hand-copied").mkdir()
    assert node_status.models(str(tmp_path / "models")) == {"tiny-gpt2": "a" * 40, "hand-copied": "unmanaged directory"}
    assert node_status.models(str(tmp_path / "absent")) == {}


def test_gpu_facts_from_the_fact_file(tmp_path):
    fact = tmp_path / "gpu.fact"
    fact.write_text(json.dumps({"gpu_count": 1, "gpu_model": "l40", "gpu_memory_mib": 46068, "driver_version": "535.129.03",
                                "cuda_version": "12.2", "gpus": [{"name": "NVIDIA L40"}]}))
    assert node_status.gpu_facts(str(fact)) == {"count": 1, "model": "l40", "name": "NVIDIA L40", "memory_mib": 46068,
                                                "driver": "535.129.03", "cuda": "12.2"}
    assert node_status.gpu_facts(str(tmp_path / "none")) is None
