"""fleet_status_table: one line per node from the status playbook's records."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("fleet_status", ROOT / "filter_plugins" / "fleet_status.py")
fleet_status = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fleet_status)
table = fleet_status.fleet_status_table

A100 = {"host": "gpu-a100-01", "status": {
    "gpu": {"count": 8, "model": "a100", "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920,
            "driver": "535.129.03", "cuda": "12.2"},
    "release": "v0.2.8-eee3958aac8a", "fschat": {"version": "0.2.33", "patch": "patched"},
    "models": {"chatglm3-6b-32k": "cb23d61ae0a142f3a6cfdd62041153dfbadb4aae", "bge-base-zh-v1.5": "76c6dbcc533d" + "0" * 28},
    "services": {"chatchat-controller": "active", "chatchat-worker-0": "active", "chatchat-api": "failed"}},
    "health": {"healthy": False, "problems": ["unit chatchat-api is failed", "a chat completion returned no tokens"]}}
MILVUS = {"host": "milvus-01", "status": {"gpu": None, "release": None, "fschat": {"version": None,
          "patch": "fschat not installed"}, "models": {}, "services": {"milvus": "active"}}, "health": None}


def test_one_aligned_line_per_node_under_a_header():
    lines = table([A100, MILVUS])
    assert lines[0].split(" | ")[0].strip() == "host" and set(lines[1]) <= {"-", "+"}
    assert len(lines) == 4 and len({line.index("|") for line in lines if "|" in line}) == 1
    a100 = [cell.strip() for cell in lines[2].split("|")]
    assert a100 == ["gpu-a100-01", "8x a100", "535.129.03/12.2", "v0.2.8-eee3958aac8a", "0.2.33 (patched)",
                    "bge-base-zh-v1.5@76c6dbcc533d, chatglm3-6b-32k@cb23d61ae0a1", "2/3 active (down: chatchat-api)",
                    "UNHEALTHY: unit chatchat-api is failed (+1 more)"]
    milvus = [cell.strip() for cell in lines[3].split("|")]
    assert milvus == ["milvus-01", "-", "-", "-", "fschat not installed", "-", "1/1 active", "-"]


def test_a_healthy_node_says_so():
    node = dict(A100, health={"healthy": True, "problems": []})
    assert table([node])[2].rstrip().endswith("healthy")


def test_bad_input_is_refused():
    with pytest.raises(AnsibleFilterError):
        table({"host": "x"})
