"""Checks of the chatchat role's model and knowledge-base settings (used by its preflight only).

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and
RETURN are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import re
from typing import Any

DOCUMENTATION = r"""
chatchat_settings_errors:
  name: chatchat_settings_errors
  short_description: Every problem of Chatchat's model and knowledge-base settings, one sentence each
  description:
    - Knowledge base names (they become Milvus collection names) and that there is at least one; the
      embedding model and every LLM (chatchat_llm_models, chatchat_vllm_models, the keys of
      chatchat_fschat_model_workers) have a path in chatchat_model_path; the default model worker
      sets both num_gpus and tensor_parallel_size and none of host, port, device; every LLM's worker
      has num_gpus equal to tensor_parallel_size, at least 1 and at most the host's GPU count.
    - Each sentence names the variable and the host.
  positional: _input
  options:
    _input:
      description: >-
        The settings without the chatchat_ prefix - knowledge_bases, kb_info, embedding_model,
        model_path, llm_models, vllm_models, fschat_model_workers, fschat_model_workers_default,
        gpu_count (0 = unknown, not checked).
      type: dict
      required: true
    host: {description: The host's name (inventory_hostname)., type: str, required: true}
"""

EXAMPLES = r"""
chatchat_settings_errors: |
  {{ {'knowledge_bases': chatchat_knowledge_bases, 'llm_models': chatchat_llm_models, ...}
     | chatchat_settings_errors(inventory_hostname) }}
"""

RETURN = r"""
chatchat_settings_errors:
  _value: {description: One sentence per problem; empty when the settings are good., type: list, elements: str}
"""

# Chatchat names the Milvus collection after the knowledge base.
KB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PATH_HINT = "<path under chatchat_model_root_path or absolute path>"


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def chatchat_settings_errors(settings: dict, host: str) -> list[str]:
    """Problems of the model and knowledge-base settings (see DOCUMENTATION)."""
    errors: list[str] = []
    kbs = _list(settings.get("knowledge_bases"))
    kb_info = _mapping(settings.get("kb_info"))
    for name in dict.fromkeys([*kbs, *kb_info]):
        if not isinstance(name, str) or not KB_NAME_RE.match(name) or len(name) > 255:
            errors.append(
                f"Knowledge base name '{name}' in chatchat_knowledge_bases (or chatchat_kb_info) on host {host} cannot "
                f"be a Milvus collection name: Chatchat names the collection after the knowledge base. Rename it "
                f"with ASCII letters, digits and underscores only, not starting with a digit (for example 'kb_docs' "
                f"or 'kb2').")
    if not kbs:
        errors.append(f"chatchat_knowledge_bases is empty on host {host}: list at least one knowledge base (the first "
                      f"is the WebUI's default), e.g. [\"samples\"].")

    model_path = _mapping(settings.get("model_path"))
    embed, llm = _mapping(model_path.get("embed_model")), _mapping(model_path.get("llm_model"))
    embedding = settings.get("embedding_model")
    if embedding not in embed:
        errors.append(f"chatchat_embedding_model '{embedding}' is not a key of chatchat_model_path.embed_model "
                      f"({', '.join(map(str, embed))}) on host {host}: add '{embedding}: {PATH_HINT}' to "
                      f"chatchat_model_path.embed_model, or pick one of those.")
    llms = _list(settings.get("llm_models"))
    if not llms:
        errors.append(f"chatchat_llm_models is empty on host {host}: list the local LLMs to serve, "
                      f"e.g. [\"chatglm3-6b-32k\"].")
    for name in llms:
        if name not in llm:
            errors.append(f"chatchat_llm_models names '{name}', which is not a key of chatchat_model_path.llm_model "
                          f"({', '.join(map(str, llm))}) on host {host}: add '{name}: {PATH_HINT}' to "
                          f"chatchat_model_path.llm_model, or remove '{name}' from chatchat_llm_models.")
    for name in _list(settings.get("vllm_models")):
        if name not in llm:
            errors.append(f"chatchat_vllm_models names '{name}', which is not a key of chatchat_model_path.llm_model "
                          f"on host {host}: fix the name or add the model to chatchat_model_path.llm_model.")
    workers = _mapping(settings.get("fschat_model_workers"))
    for name in workers:
        if name not in llm:
            errors.append(f"chatchat_fschat_model_workers has an entry for '{name}', which is not a key of "
                          f"chatchat_model_path.llm_model on host {host}: fix the name or add the model to "
                          f"chatchat_model_path.llm_model.")

    default = _mapping(settings.get("fschat_model_workers_default"))
    if "num_gpus" not in default or "tensor_parallel_size" not in default or {"host", "port", "device"} & set(default):
        errors.append(f"chatchat_fschat_model_workers_default on host {host} must set both num_gpus and "
                      f"tensor_parallel_size (startup.py otherwise uses num_gpus 4 and makes tensor_parallel_size 4), "
                      f"and must not set host, port or device (set chatchat_bind_host, chatchat_model_worker_port "
                      f"and chatchat_llm_device); got {default}.")
    gpu_count = _int(settings.get("gpu_count")) or 0
    for name in llms:
        worker = {**default, **_mapping(workers.get(name))}
        gpus, tp = worker.get("num_gpus"), worker.get("tensor_parallel_size")
        good = (isinstance(gpus, int) and not isinstance(gpus, bool) and isinstance(tp, int) and not isinstance(tp, bool)
                and gpus >= 1 and tp == gpus and (gpu_count == 0 or gpus <= gpu_count))
        if not good:
            errors.append(f"The model worker of '{name}' on host {host} has num_gpus {gpus} and tensor_parallel_size "
                          f"{tp}: both must be the same whole number, at least 1 and at most the host's GPU count "
                          f"({gpu_count}; chatchat_gpu_count, 0 = unknown). Set them in "
                          f"chatchat_fschat_model_workers_default (or both in chatchat_fschat_model_workers['{name}']).")
    return errors


class FilterModule:
    """The chatchat role's settings checks."""

    def filters(self) -> dict[str, Any]:
        return {"chatchat_settings_errors": chatchat_settings_errors}
