"""playbooks/files/chatfleet-node-status.py over a node-shaped directory tree (env, models, release), and
playbooks/status.yml run for real over local "nodes" with real fschat wheels (the patch verdict comes from fschat_patch)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import venv
import zipfile
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


@pytest.mark.parametrize("version", ["0.2.33", "0.2.36"])
def test_the_script_reads_the_version_and_leaves_the_patch_verdict_to_the_role(tmp_path, fschat_vllm_worker, version):
    # Both real files hold `stop=list(stop),`; only the version tells that 0.2.36 needs nothing, so the
    # script claims no verdict (status.yml takes fschat_patch's, below).
    assert "stop=list(stop)," in fschat_vllm_worker[version]
    found = node_status.fschat(str(make_env(tmp_path, fschat_vllm_worker[version], version)))
    assert found == {"version": version}


def test_no_fschat_in_the_env(tmp_path):
    assert node_status.fschat(str(tmp_path)) == {"version": None, "patch": "fschat not installed"}


def real_env(path: Path, wheel: Path, worker_text: str | None = None) -> Path:
    """A venv with a real fschat wheel unpacked into it (what pip installs, without the dependencies)."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    (site,) = path.glob("lib/python*/site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    if worker_text is not None:
        (site / "fastchat" / "serve" / "vllm_worker.py").write_text(worker_text)
    return path


@pytest.fixture(scope="module")
def fleet_status(tmp_path_factory, fschat_wheels, fschat_vllm_worker) -> dict[str, dict]:
    """playbooks/status.yml run for real over local GPU "nodes" whose envs hold real fschat wheels."""
    tmp = tmp_path_factory.mktemp("status")
    affected = fschat_vllm_worker["0.2.33"]
    envs = {
        "node-036": real_env(tmp / "env-036", fschat_wheels["0.2.36"]),
        "node-033": real_env(tmp / "env-033", fschat_wheels["0.2.33"]),
        "node-033-patched": real_env(tmp / "env-033-patched", fschat_wheels["0.2.33"],
                                     affected.replace("stop=list(stop),", 'stop=[i for i in stop if i != ""],')),
        "node-033-comment": real_env(tmp / "env-033-comment", fschat_wheels["0.2.33"],
                                     affected.replace("stop=list(stop),", "stop=list(stop),  # x")),
        "node-no-env": tmp / "no-such-env",
    }
    # The inventory's values that playbooks/vars/wiring.yml feeds to chatchat_env_path and chatchat_model_root_path.
    node_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "chatchat_root": str(tmp / "chatchat"), "models_root_path": str(tmp / "models"),
                 "chatchat_services_manifest_path": str(tmp / "services.json")}
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"gpu_nodes": {"hosts": {
        host: dict(node_vars, python_env_prefix=str(env)) for host, env in envs.items()}}}}}))
    report = tmp / "status.json"
    before = {path: path.read_bytes() for path in tmp.glob("env-*/lib/python*/site-packages/fastchat/serve/*.py*")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "playbooks/status.yml",
         "-e", f"status_report_path={report}"],
        cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false"),
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    recap = dict(re.findall(r"^(node-\S+)\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.MULTILINE))
    assert recap == {host: "0" for host in envs}, proc.stdout[-3000:]  # read-only on every node
    after = {path: path.read_bytes() for path in tmp.glob("env-*/lib/python*/site-packages/fastchat/serve/*.py*")}
    assert after == before and len(before) > 4  # nothing patched, no backup written
    return {node["host"]: node["status"]["fschat"] for node in json.loads(report.read_text())["nodes"]}


@pytest.mark.parametrize(("host", "fschat"), [
    ("node-036", {"version": "0.2.36", "patch": "not needed (fixed upstream)"}),
    ("node-033", {"version": "0.2.33", "patch": "NOT patched (empty stop strings reach vLLM)"}),
    ("node-033-patched", {"version": "0.2.33", "patch": "patched"}),
    ("node-no-env", {"version": None, "patch": "fschat not installed"}),
])
def test_status_reports_the_roles_verdict(fleet_status, host, fschat):
    assert fleet_status[host] == fschat


def test_status_reports_a_file_unknown_to_the_patch_with_its_reason(fleet_status):
    entry = fleet_status["node-033-comment"]
    assert entry["version"] == "0.2.33"
    assert entry["patch"].startswith("UNKNOWN to the patch: ")
    assert "another form on line 103 ('stop=list(stop),  # x')" in entry["patch"]


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
