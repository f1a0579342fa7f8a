"""State of the two converged nodes: release, link, rendered configs, data, init_database."""
from __future__ import annotations

import json
import shlex

import pytest
import yaml
from scenario import A100, CHATCHAT_ROOT, CURRENT, DATA, L40, PYTHON, lab_vars, source_files
from testlib import ROOT

# Every (module, name) that Langchain-Chatchat v0.2.8's own code imports from the configs
# package (read from the v0.2.8 source: every `from configs... import` outside configs/ and tests/).
APP_IMPORTS = {
    "configs": [
        "API_SERVER", "Agent_MODEL", "BING_SEARCH_URL", "BING_SUBSCRIPTION_KEY", "CACHED_MEMO_VS_NUM",
        "CACHED_VS_NUM", "CHUNK_SIZE", "DEFAULT_KNOWLEDGE_BASE", "DEFAULT_SEARCH_ENGINE", "DEFAULT_VS_TYPE",
        "EMBEDDING_DEVICE", "EMBEDDING_KEYWORD_FILE", "EMBEDDING_MODEL", "FSCHAT_CONTROLLER",
        "FSCHAT_MODEL_WORKERS", "FSCHAT_OPENAI_API", "HISTORY_LEN", "HTTPX_DEFAULT_TIMEOUT", "KB_INFO",
        "KB_ROOT_PATH", "LLM_DEVICE", "LLM_MODELS", "LOG_PATH", "MAX_TOKENS", "METAPHOR_API_KEY", "MODEL_PATH",
        "MODEL_ROOT_PATH", "ONLINE_LLM_MODEL", "OVERLAP_SIZE", "PROMPT_TEMPLATES", "SCORE_THRESHOLD",
        "SEARCH_ENGINE_TOP_K", "SQLALCHEMY_DATABASE_URI", "SUPPORT_AGENT_MODEL", "TEMPERATURE",
        "TEXT_SPLITTER_NAME", "VECTOR_SEARCH_TOP_K", "VERSION", "WEBUI_SERVER", "ZH_TITLE_ENHANCE", "kbs_config",
        "log_verbose", "logger", "prompt_config", "text_splitter_dict",
    ],
    "configs.basic_config": ["BASE_TEMP_DIR"],
    "configs.kb_config": [
        "CHUNK_SIZE", "DEFAULT_KNOWLEDGE_BASE", "DEFAULT_SEARCH_ENGINE", "DEFAULT_VS_TYPE", "OVERLAP_SIZE",
        "SCORE_THRESHOLD", "SEARCH_ENGINE_TOP_K", "TEXT_SPLITTER_NAME", "VECTOR_SEARCH_TOP_K", "ZH_TITLE_ENHANCE",
        "text_splitter_dict",
    ],
    "configs.model_config": [
        "EMBEDDING_MODEL", "HISTORY_LEN", "LLM_MODELS", "MODEL_PATH", "NLTK_DATA_PATH", "ONLINE_LLM_MODEL",
        "TEMPERATURE", "VLLM_MODEL_DICT",
    ],
    "configs.prompt_config": ["PROMPT_TEMPLATES"],
    "configs.server_config": [
        "API_SERVER", "FSCHAT_CONTROLLER", "FSCHAT_MODEL_WORKERS", "FSCHAT_OPENAI_API", "OPEN_CROSS_DOMAIN",
        "WEBUI_SERVER",
    ],
}

# The POC's ports (upstream's server_config.py.example); a GPU group's lab inventory may move them
# (the lab's nodes share the host's network).
POC_PORTS = {"webui": 8501, "api": 7861, "openai_api": 20000, "controller": 20001, "model_worker": 20002}


def expected_ports(node: str) -> dict:
    group = {L40: "l40", A100: "a100"}[node]
    moved = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / group / "chatchat.yml").read_text())
    return {name: moved.get(f"chatchat_{name}_port", port) for name, port in POC_PORTS.items()}


# The reference POC's vLLM tuning per GPU type (FACTS.md), as the app must see it.
POC_WORKER = {
    L40: {"infer_turbo": "vllm", "gpu_memory_utilization": 0.90, "limit_worker_concurrency": 100,
          "num_gpus": 1, "tensor_parallel_size": 1},
    A100: {"infer_turbo": "vllm", "max_num_batched_tokens": None, "max_num_seqs": 512, "max_paddings": 256,
           "gpu_memory_utilization": 0.95, "limit_worker_concurrency": 300, "num_gpus": 1,
           "tensor_parallel_size": 1, "worker_use_ray": False},
}

DUMP = """
import importlib, json, os
import configs
out = {name: getattr(configs, name) for name in dir(configs) if name.isupper() or name in ("kbs_config", "log_verbose", "text_splitter_dict")}
out = {k: v for k, v in out.items() if isinstance(v, (str, int, float, bool, list, dict, tuple, type(None)))}
out["__file__"] = os.path.realpath(configs.__file__)
out["__missing__"] = [f"{m}.{n}" for m, names in json.loads(os.environ["APP_IMPORTS"]).items()
                      for n in names if not hasattr(importlib.import_module(m), n)]
print(json.dumps(out, default=repr))
"""


@pytest.fixture()
def node(host) -> str:
    return host.backend.get_hostname()


@pytest.fixture()
def configs(host) -> dict:
    """The configs package as Chatchat sees it: imported from current/ by the env's python."""
    cmd = host.run(f"cd {CURRENT} && APP_IMPORTS='{json.dumps(APP_IMPORTS)}' {PYTHON} -c '{DUMP}'")
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def test_current_links_to_the_release(host, converged_release):
    current = host.file(CURRENT)
    assert current.is_symlink
    assert current.linked_to == converged_release
    assert host.file(converged_release).is_directory
    origin = json.loads(host.file(f"{converged_release}/.chatfleet-release.json").content_string)
    assert origin["sha256"] == lab_vars()["chatchat_source_sha256"]
    assert origin["method"] == "tarball"


def test_release_holds_the_source_tree(host, converged_release):
    for path in ("startup.py", "init_database.py", "webui.py", "copy_config_example.py", "requirements.txt",
                 "configs/__init__.py", "server/api.py"):
        assert host.file(f"{converged_release}/{path}").is_file, path
    for name in ("basic", "kb", "model", "prompt", "server"):
        assert host.file(f"{converged_release}/configs/{name}_config.py.example").is_file
    # The top directory of the tarball was stripped; no staging directory or tarball is left.
    assert not host.file(f"{converged_release}/Langchain-Chatchat-0.2.8").exists
    assert host.run(f"ls -A {CHATCHAT_ROOT}/releases").stdout.split() == [converged_release.rsplit("/", 1)[1]]
    assert host.run(f"ls -A {CHATCHAT_ROOT}/cache").stdout.split() == []


def test_nltk_data_is_kept(host):
    listing = host.check_output(f"cd {CURRENT}/nltk_data && find . -type f | sed 's|^./||' | sort")
    assert listing.split() == source_files("nltk_data")


def test_configs_are_templated_never_copied_from_the_examples(host, converged_release):
    for name in ("basic", "kb", "model", "prompt", "server"):
        config = host.file(f"{converged_release}/configs/{name}_config.py")
        assert config.is_file
        assert (config.user, config.group, config.mode) == ("root", "chatchat", 0o640)
        # The role's template (its header), not upstream's example copied by copy_config_example.py.
        assert "written by the chatfleet chatchat role" in config.content_string
        assert config.content_string != host.file(f"{converged_release}/configs/{name}_config.py.example").content_string


def test_configs_import_with_every_name_the_app_reads(configs, converged_release):
    assert configs["__missing__"] == []
    assert configs["__file__"] == f"{converged_release}/configs/__init__.py"
    assert configs["VERSION"] == "v0.2.8"


def test_configs_hold_the_poc_values(configs):
    assert configs["DEFAULT_VS_TYPE"] == "milvus"
    # The lab serves its own small models in place of the POC's (inventories/lab/group_vars/all/models.yml).
    assert configs["EMBEDDING_MODEL"] == "tiny-bert-embed"
    assert configs["LLM_MODELS"] == ["tiny-gpt2"]
    assert configs["MODEL_ROOT_PATH"] == "/opt/chatchat/models"
    assert "tiny-gpt2" in configs["MODEL_PATH"]["llm_model"]
    assert "tiny-bert-embed" in configs["MODEL_PATH"]["embed_model"]
    assert "tiny-gpt2" in configs["VLLM_MODEL_DICT"]
    # Chat defaults (POC table): plain LLM chat, and the knowledge-base chat's retrieval.
    assert (configs["TEMPERATURE"], configs["HISTORY_LEN"]) == (0.7, 10)
    assert (configs["VECTOR_SEARCH_TOP_K"], configs["SCORE_THRESHOLD"]) == (1, 1.0)
    assert (configs["KB_CHAT_TEMPERATURE"], configs["KB_CHAT_HISTORY_LEN"]) == (0.1, 0)
    assert configs["REPETITION_PENALTY"] == 1.2
    # chatchat_milvus (playbooks/vars/wiring.yml) from the lab's milvus settings and this scenario's
    # external host: the application user the milvus role creates and gates.
    assert configs["kbs_config"]["milvus"] == {"host": "127.0.0.1", "port": "19530", "user": "chatchat",
                                               "password": "lab-milvus-app-Pw1", "secure": False}
    assert configs["ONLINE_LLM_MODEL"] == {}


def test_configs_point_at_data_outside_the_release(configs, converged_release):
    assert configs["KB_ROOT_PATH"] == f"{DATA}/knowledge_base"
    assert configs["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{DATA}/knowledge_base/info.db"
    assert configs["LOG_PATH"] == "/var/log/chatchat"
    assert configs["BASE_TEMP_DIR"] == f"{DATA}/tmp"
    assert configs["NLTK_DATA_PATH"] == f"{converged_release}/nltk_data"


def test_servers_and_model_worker_per_gpu_type(configs, node):
    ports = expected_ports(node)
    assert configs["WEBUI_SERVER"]["port"] == ports["webui"]
    assert configs["API_SERVER"]["port"] == ports["api"]
    assert configs["FSCHAT_OPENAI_API"]["port"] == ports["openai_api"]
    assert configs["FSCHAT_CONTROLLER"]["port"] == ports["controller"]
    worker = configs["FSCHAT_MODEL_WORKERS"]["default"]
    # LLM_DEVICE from the lab inventory (chatchat_llm_device), the workers' default device.
    assert configs["LLM_DEVICE"] == lab_vars()["chatchat_llm_device"]
    assert (worker["host"], worker["port"], worker["device"]) == ("0.0.0.0", ports["model_worker"], configs["LLM_DEVICE"])
    assert {k: v for k, v in worker.items() if k not in ("host", "port", "device")} == POC_WORKER[node]
    # max_gpu_memory is each GPU's whole GiB as gpu_preflight found it (l40x1: 46068 MiB, a100x8: 81920 MiB).
    assert configs["FSCHAT_MODEL_WORKERS"]["tiny-gpt2"]["max_gpu_memory"] == {L40: "44GiB", A100: "80GiB"}[node]


# Formats every rendered prompt template with the env's real langchain, the way v0.2.8 reads each
# type (server/chat/*.py, server/agent/*), with the variables it passes; prints, per template, the
# variables the template declares and the text the model would receive.
FORMAT_PROMPTS = r"""
import json
from langchain.prompts import PromptTemplate
from langchain.prompts.chat import ChatMessagePromptTemplate, SystemMessagePromptTemplate
from configs.prompt_config import PROMPT_TEMPLATES

GIVEN = {name: "<%s-value>" % name
         for name in ("input", "history", "context", "question", "tools", "tool_names", "agent_scratchpad")}


def picked(names):
    return {name: GIVEN[name] for name in names}


def read(kind, name, text):
    if kind == "agent_chat" and name == "ChatGLM3":
        # ChatGLM3Agent.create_prompt: str.format with placeholders kept, then a system message template.
        first = text.format(tool_names=GIVEN["tool_names"], tools=GIVEN["tools"], history="{history}",
                            input="{input}", agent_scratchpad="{agent_scratchpad}")
        prompt = SystemMessagePromptTemplate.from_template(first)
        return prompt.prompt.input_variables, prompt.format(**picked(prompt.prompt.input_variables)).content
    if kind == "agent_chat":
        # CustomPromptTemplate.format: str.format with every agent variable.
        return ["agent"], text.format(**picked(("input", "history", "tools", "tool_names", "agent_scratchpad")))
    if kind == "completion" or (kind, name) == ("llm_chat", "with_history"):
        # completion.py and chat.py's memory branch: PromptTemplate.from_template (Python braces).
        prompt = PromptTemplate.from_template(text)
    else:
        # History(...).to_msg_template(False): a jinja2 chat message template.
        prompt = ChatMessagePromptTemplate.from_template(text, "jinja2", role="user").prompt
    # LLMChain passes the template's own input variables out of what the endpoint gives it.
    unknown = sorted(set(prompt.input_variables) - set(GIVEN))
    if unknown:
        return prompt.input_variables, None
    return prompt.input_variables, prompt.format(**picked(prompt.input_variables))


out = {}
for kind, templates in PROMPT_TEMPLATES.items():
    for name, text in templates.items():
        variables, rendered = read(kind, name, text)
        out["%s/%s" % (kind, name)] = {"variables": sorted(variables), "text": rendered}
print(json.dumps(out))
"""

# The variable that carries the user's text in each prompt type (v0.2.8's endpoints): it must reach the model.
USER_TEXT = {"llm_chat": "input", "completion": "input", "agent_chat": "input",
             "knowledge_base_chat": "question", "search_engine_chat": "question"}
# Templates that answer without retrieved text (nothing matched in the knowledge base).
WITHOUT_CONTEXT = {"knowledge_base_chat/empty", "knowledge_base_chat/Empty"}


def test_prompt_templates_format_as_the_app_formats_them(host):
    cmd = host.run(f"cd {CURRENT} && {PYTHON} -c {shlex.quote(FORMAT_PROMPTS)}")
    assert cmd.rc == 0, cmd.stderr
    formatted = json.loads(cmd.stdout)
    assert {key.split("/")[0] for key in formatted} == set(USER_TEXT)
    for key, result in formatted.items():
        kind = key.split("/")[0]
        assert result["text"] is not None, f"{key} declares variables the app never passes: {result['variables']}"
        assert f"<{USER_TEXT[kind]}-value>" in result["text"], f"{key} drops the user's text: {result['text']!r}"
        if kind in ("knowledge_base_chat", "search_engine_chat") and key not in WITHOUT_CONTEXT:
            assert "<context-value>" in result["text"], f"{key} drops the retrieved text: {result['text']!r}"
        assert "{" not in result["text"].replace("{\n  \"action\"", ""), f"{key} leaves a brace field: {result['text']!r}"


@pytest.mark.security
def test_configs_readable_by_the_service_account_only(host):
    assert host.run(f"cd {CURRENT} && runuser -u chatchat -- {PYTHON} -c 'import configs'").rc == 0
    other = host.run(f"cd {CURRENT} && runuser -u nobody -- {PYTHON} -c 'import configs'")
    assert other.rc != 0
    assert "Permission denied" in other.stderr


@pytest.mark.security
def test_service_account_and_directories(host):
    user = host.user("chatchat")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == DATA
    for path in (DATA, f"{DATA}/knowledge_base", f"{DATA}/knowledge_base/samples/content", "/var/log/chatchat",
                 f"{DATA}/tmp"):
        directory = host.file(path)
        assert directory.is_directory, path
        assert (directory.user, directory.group, directory.mode) == ("chatchat", "chatchat", 0o750), path
    tmpfiles = host.file("/etc/tmpfiles.d/chatchat.conf").content_string
    assert f"d {DATA}/tmp 0750 chatchat chatchat 7d" in tmpfiles
    # systemd-tmpfiles accepts the rule.
    assert host.run("systemd-tmpfiles --create /etc/tmpfiles.d/chatchat.conf").rc == 0


def test_init_database_ran_once_as_the_service_account(host, converged_release):
    # The real init_database.py --create-tables, run as the service account: the SQLite database it
    # made is the account's; the marker records the run (the second-run test shows it never runs again).
    database = host.file(f"{DATA}/knowledge_base/info.db")
    assert (database.user, database.group) == ("chatchat", "chatchat")
    marker = json.loads(host.file(f"{DATA}/.init_database.done").content_string)
    assert marker["mode"] == "create-tables"
    assert marker["release"] == converged_release.rsplit("/", 1)[1]
    assert marker["time"].endswith("Z")
    assert marker["command"].endswith("init_database.py --create-tables")
    query = (f"import sqlite3; print(sqlite3.connect('{DATA}/knowledge_base/info.db')"
             ".execute(\"select name from sqlite_master where type='table'\").fetchall())")
    tables = host.check_output(f"{PYTHON} -c {json.dumps(query)}")
    for table in ("knowledge_base", "knowledge_file", "file_doc", "conversation", "message"):
        assert f"'{table}'" in tables
