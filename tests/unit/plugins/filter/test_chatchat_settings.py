"""Unit tests for filter_plugins/chatchat_settings.py (the chatchat role's preflight checks).

These cases were bad-input runs of the chatchat molecule scenario (test_role_runs.py's LLM without
a model path, knowledge base names Milvus rejects, model worker GPUs); the scenario keeps one run
that proves the wiring (the run stops before any change, the failed task's message names the
variable and the host).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("chatchat_settings", ROOT / "filter_plugins" / "chatchat_settings.py")
chatchat_settings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chatchat_settings)
errors = chatchat_settings.FilterModule().filters()["chatchat_settings_errors"]

HOST = "chatchat-l40"


def settings(**overrides):
    base = {"knowledge_bases": ["samples"], "kb_info": {"samples": "About the samples"},
            "embedding_model": "bge-large-zh",
            "model_path": {"embed_model": {"bge-large-zh": "bge-large-zh"},
                           "llm_model": {"chatglm3-6b-32k": "chatglm3-6b-32k", "tiny-gpt2": "tiny-gpt2"}},
            "llm_models": ["chatglm3-6b-32k"], "vllm_models": ["chatglm3-6b-32k"], "fschat_model_workers": {},
            "fschat_model_workers_default": {"infer_turbo": "vllm", "num_gpus": 1, "tensor_parallel_size": 1},
            "gpu_count": 1}
    base.update(overrides)
    return base


def one(found: list[str]) -> str:
    assert len(found) == 1, found
    assert f"host {HOST}" in found[0] or f"Host {HOST}" in found[0]
    return found[0]


def test_good_settings_have_no_errors():
    assert errors(settings(), HOST) == []
    eight = {"infer_turbo": "vllm", "num_gpus": 8, "tensor_parallel_size": 8}
    assert errors(settings(fschat_model_workers_default=eight, gpu_count=8), HOST) == []
    # 0 = the GPU count is unknown: not checked.
    assert errors(settings(fschat_model_workers_default=eight, gpu_count=0), HOST) == []
    assert errors(settings(fschat_model_workers_default=eight, gpu_count="8"), HOST) == []


@pytest.mark.parametrize("models", [["qwen-7b"], ["tiny-gpt2", "Qwen-14B-Chat"]])
def test_an_llm_without_a_model_path_is_named_with_the_fix(models):
    missing = models[-1]
    text = one(errors(settings(llm_models=models), HOST))
    assert f"chatchat_llm_models names '{missing}', which is not a key of chatchat_model_path.llm_model" in text
    assert f"add '{missing}: <path" in text


@pytest.mark.parametrize("name", ["知识库", "1kb", "kb-docs", "k" * 256])
def test_a_knowledge_base_name_that_milvus_rejects_is_named(name):
    text = one(errors(settings(knowledge_bases=["samples", name]), HOST))
    assert f"Knowledge base name '{name}' in chatchat_knowledge_bases" in text
    assert "ASCII letters, digits and underscores" in text


def test_kb_info_keys_are_knowledge_base_names_too():
    assert "Knowledge base name 'kb-faq'" in one(errors(settings(kb_info={"kb-faq": "x"}), HOST))
    assert errors(settings(knowledge_bases=["samples", "kb_2"], kb_info={"kb_2": "x"}), HOST) == []


@pytest.mark.parametrize(("worker", "text"), [
    ({"infer_turbo": "vllm", "num_gpus": 2, "tensor_parallel_size": 2}, "at most the host's GPU count (1"),
    ({"infer_turbo": "vllm", "num_gpus": 1, "tensor_parallel_size": 2}, "both must be the same whole number"),
    ({"infer_turbo": "vllm", "num_gpus": 0, "tensor_parallel_size": 0}, "at least 1"),
    ({"infer_turbo": "vllm", "num_gpus": "1", "tensor_parallel_size": "1"}, "same whole number"),
])
def test_model_worker_gpus_are_checked_against_the_host(worker, text):
    found = one(errors(settings(fschat_model_workers_default=worker), HOST))
    assert text in found and "The model worker of 'chatglm3-6b-32k'" in found and "chatchat_gpu_count" in found


def test_the_default_worker_must_set_both_and_no_host_port_or_device():
    found = errors(settings(fschat_model_workers_default={"infer_turbo": "vllm", "num_gpus": 1}), HOST)
    assert any("must set both num_gpus and tensor_parallel_size" in e for e in found)
    found = errors(settings(fschat_model_workers_default={"num_gpus": 1, "tensor_parallel_size": 1, "port": 21002}),
                   HOST)
    assert "must not set host, port or device" in one(found)


def test_a_per_model_worker_overrides_the_default():
    per_model = {"chatglm3-6b-32k": {"num_gpus": 2, "tensor_parallel_size": 2}}
    assert "num_gpus 2" in one(errors(settings(fschat_model_workers=per_model), HOST))
    assert errors(settings(fschat_model_workers=per_model, gpu_count=2), HOST) == []


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"knowledge_bases": []}, "chatchat_knowledge_bases is empty on host"),
    ({"embedding_model": "m3e-base"}, "chatchat_embedding_model 'm3e-base' is not a key of chatchat_model_path.embed_model"),
    ({"llm_models": []}, "chatchat_llm_models is empty on host"),
    ({"vllm_models": ["qwen-7b"]}, "chatchat_vllm_models names 'qwen-7b'"),
    ({"fschat_model_workers": {"qwen-7b": {}}}, "chatchat_fschat_model_workers has an entry for 'qwen-7b'"),
])
def test_every_other_rule_names_its_variable(overrides, fragment):
    assert fragment in one(errors(settings(**overrides), HOST))


def test_every_problem_is_reported_at_once():
    assert len(errors(settings(knowledge_bases=["1kb"], llm_models=["qwen-7b"], embedding_model="x"), HOST)) == 3
