"""The whole site converged on a lab-style fleet: one L40 node, one 8xA100 node, one Milvus node."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner
from site_kb import ask_kb, kb_name
from testlib import ROOT, docker_exec, run_playbook

MIRROR = "127.0.0.1:18080"
EXPECTED_GPUS = {"site-l40-1": ("l40", 1), "site-a100-1": ("a100", 8)}
MILVUS_NODE = "site-milvus-1"
# The host tests below are about the GPU nodes; the Milvus node has a test of its own.
testinfra_hosts = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("gpu_nodes")


@pytest.fixture()
def node(host):
    return host.backend.get_hostname()


def lab_group_vars(group: str, topic: str) -> dict:
    """A file of the lab inventory's group_vars, which the scenario links."""
    return yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / group / f"{topic}.yml").read_text())


def run_site(*options: str, extra_inventory: str | None = None):
    return run_playbook(ROOT / "site.yml", *options, extra_inventory=extra_inventory)


# Right after the converge, before any test changes a node: molecule's own idempotence step, as a
# marked test (every scenario proves its idempotence in one, counted in the proof report), with
# the converge's one batch (molecule.yml's extra vars).
@pytest.mark.idempotence
def test_a_second_site_run_changes_nothing():
    run = run_playbook(ROOT / "site.yml", extra_vars={"rollout_serial": ["100%"], "rollout_allow_all_at_once": True})
    assert run.rc == 0 and run.changed == 0, run
    assert {*EXPECTED_GPUS, MILVUS_NODE} <= set(run.recap), run


@pytest.mark.security
def test_pip_uses_only_the_mirror(host):
    conf = host.file("/etc/pip.conf")
    assert conf.exists
    assert f"http://{MIRROR}/repository/pypi-proxy/simple/" in conf.content_string
    assert "pypi.org" not in conf.content_string


@pytest.mark.security
def test_apt_uses_only_the_mirror(host):
    policy = host.check_output("apt-cache policy")
    sources = {line.split()[1] for line in policy.splitlines() if line.strip().startswith(("100", "500", "990"))
               and "://" in line}
    assert sources, policy
    assert all(MIRROR in src for src in sources), sources


def test_git_lfs_installed_system_wide(host):
    assert host.package("git-lfs").is_installed
    assert "filter.lfs.process" in host.check_output("git config --system --list")


def test_gpu_facts_match_the_group(host, node):
    family, count = EXPECTED_GPUS[node]
    facts = json.loads(host.file("/etc/ansible/facts.d/gpu.fact").content_string)
    assert facts["gpu_count"] == count
    assert facts["gpu_model"] == family


ENV = "/opt/chatchat/envs/0.2.8"
CURRENT = "/opt/chatchat/current"
# The POC's vLLM tuning per GPU type (inventories/lab/group_vars/{l40,a100}/chatchat.yml).
EXPECTED_WORKER = {
    "site-l40-1": {"gpu_memory_utilization": 0.90, "limit_worker_concurrency": 100, "num_gpus": 1,
                   "tensor_parallel_size": 1},
    "site-a100-1": {"gpu_memory_utilization": 0.95, "limit_worker_concurrency": 300, "num_gpus": 1,
                    "tensor_parallel_size": 1, "max_num_seqs": 512, "max_paddings": 256},
}


def test_env_holds_the_release_requirements_and_the_project_pins(host):
    versions = json.loads(host.check_output(
        f"{ENV}/bin/python -c \"import json, importlib.metadata as m; "
        f"print(json.dumps({{p: m.version(p) for p in ('fschat', 'pymilvus', 'langchain', 'SQLAlchemy', 'numpy')}}))\""))
    requirements = host.file(f"{CURRENT}/requirements.txt").content_string
    assert "fschat>=0.2.33" in requirements  # the release asks for a range ...
    assert versions["fschat"] == "0.2.33"  # ... the project's pin wins
    assert versions["pymilvus"].startswith("2.3.")
    assert versions["langchain"] == "0.0.344" and versions["SQLAlchemy"] == "2.0.19"
    assert versions["numpy"].startswith("1.24.")
    host.run_expect([0], f"{ENV}/bin/python -m pip check")


def test_fschat_in_the_env_is_patched(host):
    worker = host.check_output(
        f"{ENV}/bin/python -c \"import importlib.util, os; "
        f"print(os.path.join(importlib.util.find_spec('fastchat').submodule_search_locations[0], 'serve', 'vllm_worker.py'))\"")
    text = host.file(worker).content_string
    assert 'stop=[i for i in stop if i != ""],' in text
    assert "stop=list(stop)," not in text


def test_configs_import_with_the_group_tuning(host, node):
    out = host.check_output(
        f"cd {CURRENT} && {ENV}/bin/python -c \"import json, configs; print(json.dumps(dict("
        f"worker=configs.FSCHAT_MODEL_WORKERS['default'], vs=configs.DEFAULT_VS_TYPE, "
        f"embed=configs.EMBEDDING_MODEL, llms=configs.LLM_MODELS)))\"")
    rendered = json.loads(out.splitlines()[-1])
    assert rendered["vs"] == "milvus" and rendered["embed"] == "tiny-bert-embed"
    assert rendered["llms"] == ["tiny-gpt2"]
    assert rendered["worker"]["infer_turbo"] == "vllm"
    for key, value in EXPECTED_WORKER[node].items():
        assert rendered["worker"][key] == value, key


@pytest.mark.security
def test_chatchat_reaches_the_gated_milvus_with_its_configured_user(host):
    """kb_config's kbs_config["milvus"] (chatchat_milvus, playbooks/vars/wiring.yml) logs in to the site's Milvus with
    the Chatchat env's own pymilvus; the same client without credentials is refused."""
    out = host.check_output(
        f"cd {CURRENT} && {ENV}/bin/python -c \"import json, configs\n"
        f"from pymilvus import connections, utility\n"
        f"conf = configs.kbs_config['milvus']\n"
        f"connections.connect('kb', host=conf['host'], port=conf['port'], user=conf['user'], password=conf['password'], timeout=10)\n"
        f"utility.list_collections(using='kb')\n"
        f"try:\n"
        f"    connections.connect('anon', host=conf['host'], port=conf['port'], timeout=10); utility.list_collections(using='anon'); anon = 'accepted'\n"
        f"except Exception as exc:\n"
        f"    anon = str(exc)\n"
        f"print(json.dumps(dict(user=conf['user'], anon=anon)))\"")
    result = json.loads(out.splitlines()[-1])
    assert result["user"] == "chatchat"
    assert "UNAUTHENTICATED" in result["anon"]


def test_models_are_where_chatchat_looks_for_them(host):
    """MODEL_ROOT_PATH/<MODEL_PATH key> holds each configured model, weights in place of LFS pointers."""
    out = host.check_output(
        f"cd {CURRENT} && {ENV}/bin/python -c \"import json, configs; print(json.dumps(dict("
        f"root=configs.MODEL_ROOT_PATH, models=[configs.EMBEDDING_MODEL] + configs.LLM_MODELS)))\"")
    rendered = json.loads(out.splitlines()[-1])
    for name in rendered["models"]:
        path = f"{rendered['root']}/{name}"
        assert host.file(f"{path}/config.json").is_file, path
        weights = host.file(f"{path}/model.safetensors")
        assert weights.size > 1024 and not weights.content[:40].startswith(b"version https://git-lfs"), path
    env = host.file("/etc/chatfleet/models.env").content_string
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env


def test_the_model_cache_serves_the_other_gpu_node(host, node):
    """site-l40-1 is the model_cache host; site-a100-1 reads from it (rsync), not only from the mirror."""
    if node != "site-l40-1":
        pytest.skip("the cache runs on site-l40-1 only")
    assert host.service("chatfleet-models-cache").is_running
    listing = docker_exec("site-a100-1", "rsync", "rsync://127.0.0.1:8873/models/").stdout
    assert "tiny-gpt2" in listing and "tiny-bert-embed" in listing


def test_release_is_current_and_database_initialised_once(host):
    link = host.file(CURRENT)
    assert link.is_symlink and link.linked_to.startswith("/opt/chatchat/releases/v0.2.8-")
    marker = json.loads(host.file("/var/lib/chatchat/.init_database.done").content_string)
    assert marker["mode"] == "create-tables" and link.linked_to.endswith(marker["release"])
    assert host.file("/var/lib/chatchat/knowledge_base/info.db").user == "chatchat"


# Each node's services (lab group_vars: the L40 node on the default ports, the A100 node's moved by
# 1000 because the lab's nodes share the host's network) and its workers.
SERVICES = {
    "site-l40-1": {"openai_api": 20000, "api": 7861, "webui": 8501, "workers": ["tiny-gpt2"],
                   "concurrency": "100"},
    "site-a100-1": {"openai_api": 21000, "api": 8861, "webui": 9501, "workers": ["tiny-gpt2-0", "tiny-gpt2-1"],
                    "concurrency": "300"},
}


def node_http(host, url: str, body: dict | None = None) -> tuple[int, str]:
    """(status, body) of a request made on the node with its system python3."""
    data = json.dumps(json.dumps(body)) if body is not None else "None"
    script = (
        "import urllib.request, urllib.error\n"
        f"data = {data}\n"
        f"req = urllib.request.Request({url!r}, data=data.encode() if data else None, "
        "headers={'Content-Type': 'application/json'})\n"
        "try:\n"
        "    answer = urllib.request.urlopen(req, timeout=120); print(answer.status); print(answer.read().decode())\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code); print(error.read().decode())\n")
    out = host.check_output(f"python3 - <<'EOF'\n{script}\nEOF")
    status, _, text = out.partition("\n")
    return int(status), text


def test_every_service_runs_as_its_own_unit_and_answers(host, node):
    services = SERVICES[node]
    units = (["chatchat-controller", "chatchat-openai-api", "chatchat-api", "chatchat-webui"]
             + [f"chatchat-worker-{name}" for name in services["workers"]])
    for unit in units:
        assert host.service(unit).is_running and host.service(unit).is_enabled, unit
        assert host.check_output(f"systemctl show -p User --value {unit}") == "chatchat"
    assert node_http(host, f"http://127.0.0.1:{services['webui']}/_stcore/health")[0] == 200
    status, text = node_http(host, f"http://127.0.0.1:{services['api']}/knowledge_base/list_knowledge_bases")
    assert status == 200 and json.loads(text)["code"] == 200


def test_each_nodes_openai_api_answers_a_chat_completion_through_its_workers(host, node):
    services = SERVICES[node]
    status, text = node_http(host, f"http://127.0.0.1:{services['openai_api']}/v1/chat/completions",
                             {"model": "tiny-gpt2", "messages": [{"role": "user", "content": "hello"}],
                              "max_tokens": 16, "temperature": 0})
    assert status == 200, text
    answer = json.loads(text)
    assert answer["usage"]["completion_tokens"] > 0 and answer["choices"][0]["message"]["role"] == "assistant"


def test_the_real_webui_renders_the_dialogue_page_in_chromium(node):
    """webui.py under streamlit, drawn by headless Chromium: Chatchat's dialogue page, no exception.
    The screenshot is kept under artifacts/."""
    check = subprocess.run([sys.executable, str(ROOT / "lab" / "webui_check.py"), "--url",
                            f"http://127.0.0.1:{SERVICES[node]['webui']}", "--screenshot",
                            str(ROOT / "artifacts" / f"webui-{node}.png")], capture_output=True, text=True, timeout=600)
    result = json.loads(check.stdout or "{}")
    assert check.returncode == 0 and result["problems"] == [], check.stdout + check.stderr
    assert result["dialogue"] and result["version"] == "v0.2.8" and result["exceptions"] == []


# Reads the KB's Milvus collection as the application user, then as a user of no role (made and
# removed with the root account): prints what each got.
MILVUS_READERS = """
import json, sys
from pymilvus import Collection, connections, utility
import configs
kb, root_password = sys.argv[1:3]
conf = configs.kbs_config["milvus"]
connections.connect("app", host=conf["host"], port=conf["port"], user=conf["user"], password=conf["password"], timeout=10)
collection = Collection(kb, using="app")
collection.load()
out = {"user": conf["user"], "rows": len(collection.query(expr="pk > 0", output_fields=["pk"], limit=100))}
connections.connect("root", host=conf["host"], port=conf["port"], user="root", password=root_password, timeout=10)
utility.create_user("e2e_no_role", "No-role-Pw1", using="root")
try:
    connections.connect("other", host=conf["host"], port=conf["port"], user="e2e_no_role", password="No-role-Pw1", timeout=10)
    try:
        out["other"] = len(Collection(kb, using="other").query(expr="pk > 0", limit=100))
    except Exception as exc:
        out["other"] = str(exc)
finally:
    utility.delete_user("e2e_no_role", using="root")
print(json.dumps(out))
"""


def test_each_nodes_knowledge_base_answers_from_milvus_citing_the_uploaded_document(host, node):
    """The real v0.2.8 API of each GPU node: create a KB in Milvus, upload the lab's document, the
    knowledge-base chat cites it; /chat/chat and /other/completion answer. The collection is in Milvus
    and readable by the application user only."""
    kb = kb_name(node)
    result = ask_kb(node)
    assert result["cited"] == ["chatfleet-lab-facts.csv"]
    assert result["kb_answer"] and result["chat"] and result["completion"]
    root_password = lab_group_vars("all", "milvus")["milvus_root_password"]
    out = host.check_output(f"cd {CURRENT} && {ENV}/bin/python - {kb} {root_password} <<'EOF'\n{MILVUS_READERS}\nEOF")
    readers = json.loads(out.splitlines()[-1])
    assert (readers["user"], readers["rows"]) == ("chatchat", 2)  # the document's two rows
    assert "permission deny" in str(readers["other"]).lower(), readers


def test_the_workers_carry_their_gpu_groups_profile(host, node):
    for name in SERVICES[node]["workers"]:
        pid = host.check_output(f"systemctl show -p MainPID --value chatchat-worker-{name}")
        argv = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
        assert argv[argv.index("--limit-worker-concurrency") + 1] == SERVICES[node]["concurrency"]
        assert argv[argv.index("--num-gpus") + 1] == "1"


def test_milvus_runs_on_its_own_node_only():
    """The milvus group's node serves Milvus (the GPU nodes reached it above); no GPU node runs one."""
    assert docker_exec(MILVUS_NODE, "systemctl", "is-active", "milvus").stdout.strip() == "active"
    assert MIRROR in docker_exec(MILVUS_NODE, "cat", "/etc/pip.conf").stdout
    for node in EXPECTED_GPUS:
        state = docker_exec(node, "systemctl", "is-active", "milvus", check=False).stdout.strip()
        assert state != "active", node
        assert docker_exec(node, "test", "-e", "/etc/systemd/system/chatchat.target", check=False).returncode == 0
    assert docker_exec(MILVUS_NODE, "test", "-e", "/etc/systemd/system/chatchat.target", check=False).returncode != 0


# A second converge changing nothing is test_a_second_site_run_changes_nothing above; check mode on
# the converged fleet is test_site_operations.py's `chatfleet check` (changed=0 on every host, no drift).


def node_state(node: str) -> str:
    """What a run that stops before any change leaves as it was: the mirror settings, the release, the
    units and the env's packages."""
    return docker_exec(node, "bash", "-c", "md5sum /etc/pip.conf /etc/apt/sources.list.d/* 2>&1; "
                       "readlink /opt/chatchat/current; ls -l --time-style=+%s /etc/systemd/system; "
                       "ls /opt/chatchat/envs/0.2.8/lib/python3.10/site-packages 2>&1 | md5sum", check=False).stdout


def fleet_state() -> dict[str, str]:
    return {node: node_state(node) for node in (*EXPECTED_GPUS, MILVUS_NODE)}


# Each role's own rules are proven in its scenario and in the plugins' unit tests. Here: site.yml's
# wiring, that the preflight play checks every role's input on every host before any play changes
# one. The manifest is read by the models role, the last role of the chain.
@pytest.mark.bad_input
def test_a_bad_variable_of_the_last_role_stops_the_site_before_any_host_changes():
    before = fleet_state()
    manifest = [{"name": "tiny-gpt2", "repo": "lab/tiny-gpt2", "revision": "main", "kind": "llm", "size": "4M"}]
    result = run_playbook(ROOT / "site.yml", extra_vars={"models_manifest": manifest})
    assert result.rc != 0 and result.changed == 0, result
    for node in EXPECTED_GPUS:
        failure = result.failure(node)["msg"]
        assert "models_manifest" in failure and node in failure, failure
    assert fleet_state() == before


@pytest.mark.bad_input
def test_a_host_in_both_gpu_groups_stops_the_site_naming_the_host_and_the_groups():
    before = fleet_state()
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as extra:
        extra.write("all:\n  children:\n    a100:\n      hosts:\n        site-l40-1:\n")
        extra.flush()
        result = run_site(extra_inventory=extra.name)
    assert result.rc != 0 and result.changed == 0, result
    failure = result.failure("site-l40-1")["msg"]
    assert "site-l40-1" in failure and "a100" in failure and "l40" in failure, failure
    assert fleet_state() == before


@pytest.mark.bad_input
def test_a_gpu_group_host_without_a_gpu_stops_the_site_naming_the_host():
    before = fleet_state()
    docker_exec("site-a100-1", "mv", "/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi.away")
    try:
        result = run_site()
    finally:
        docker_exec("site-a100-1", "mv", "/usr/bin/nvidia-smi.away", "/usr/bin/nvidia-smi")
    assert result.rc != 0 and result.changed == 0, result
    failure = result.failure("site-a100-1")["msg"]
    assert "site-a100-1" in failure and "nvidia-smi" in failure, failure
    assert fleet_state() == before
