"""Derive the vLLM model worker profiles of a GPU host (for the FastChat/Chatchat services).

Two filters. vllm_worker_profiles: from the GPUs gpu_preflight detected, the model's size and the
GPU group's tuning (the POC values in group_vars), it returns one dict per model worker with the
GPUs the worker gets, its tensor parallel size, a max_model_len whose KV cache fits, its
max_gpu_memory, its port and every tuning key, so that unit command lines and server_config.py are
written from the same values. Explicit inventory values win over what is derived, and the result is
checked as vLLM 0.2.x will check it at start (plus what no one checks until the GPU runs out of
memory). vllm_busy_gpus: the workers' GPUs on which other processes hold more memory than the worker
can do without (vLLM would fail at load).

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
vllm_worker_profiles:
  name: vllm_worker_profiles
  short_description: vLLM model worker profiles (GPUs, tensor parallelism, max_model_len, port) of a GPU host
  description:
    - "Splits the host's GPUs into model workers (workers, default one worker over every GPU), and for
      each worker derives C(gpus), C(cuda_visible_devices), C(num_gpus) and C(tensor_parallel_size)
      (both the number of GPUs the worker gets), C(gpu_memory_utilization) (the profile's, else 0.9),
      C(max_model_len), C(port) (base_port + the worker's position, unless the worker sets one) and
      C(max_gpu_memory) (FastChat's per-GPU limit, read by its plain model_worker: the memory of the
      worker's smallest GPU in whole GiB, C(memory_mib // 1024), for example C(80GiB) on an A100 80GB,
      C(40GiB) on an A100 40GB, C(44GiB) on an L40)."
    - "Precedence, lowest first: the group profile (every key is copied), the derived values, then
      overrides['all'], then overrides[<worker name>]. The profile's own num_gpus,
      tensor_parallel_size, max_model_len and port are replaced by derived values: the POC's
      num_gpus 1 is only true on a one-GPU worker. Pin them with overrides. max_gpu_memory is derived
      below the profile: a value in the profile or in overrides wins (null leaves FastChat's own default)."
    - "Memory model, per GPU of a worker (vLLM 0.2.x): usable = memory_mib * gpu_memory_utilization;
      weights = params_b * 1e9 * dtype_bytes / tensor_parallel_size; the KV cache gets
      usable - weights - reserve_mib. The weights not fitting is an over-commit error. With the model's
      kv_bytes_per_token (2 * layers * kv_heads * head_dim * dtype_bytes, for the whole model), the
      derived max_model_len is the model's own, or fewer tokens (a multiple of vLLM's block of 16)
      when the KV cache cannot hold that many; without it the model's own is used and only the
      weights are checked."
    - "Fails (AnsibleFilterError naming the worker, the value and the inventory variable) on: a GPU
      list that is empty or malformed; a worker with no GPUs, an unknown GPU index or a GPU already in
      another worker; tensor_parallel_size or num_gpus not equal to the worker's GPU count (vLLM 0.2
      has no pipeline parallelism: a smaller tp leaves GPUs idle, a larger one cannot start);
      num_attention_heads or num_key_value_heads not divisible as vLLM requires;
      gpu_memory_utilization outside (0, 1]; weights over-committing a GPU; a max_model_len longer
      than the model's or than its KV cache; a derived max_model_len under min_model_len; a port
      out of range, used by two workers or listed in taken_ports; overrides for an unknown worker;
      a max_gpu_memory that is not a whole number of GiB, MiB, GB or MB (as FastChat passes it to
      accelerate), or that is more than the memory of the worker's smallest GPU."
    - The inventory variable names in the messages are the module constants in VARIABLES.
  positional: _input, model, profile, workers, overrides
  options:
    _input:
      description: The host's GPUs, C(gpu_preflight_gpus) (filter nvidia_smi_gpus), each with index and memory_mib.
      type: list
      elements: dict
      required: true
    model:
      description:
        - "The served model: name (str), params_b (billions of parameters), dtype_bytes (default 2),
          max_model_len (its context length), and optionally kv_bytes_per_token, num_attention_heads,
          num_key_value_heads."
      type: dict
      required: true
    profile:
      description: The GPU group's worker tuning, C(chatchat_fschat_model_workers_default).
      type: dict
      required: true
    workers:
      description:
        - "Explicit workers, each {name, gpus: [GPU indexes], port (optional)}. Names match
          [A-Za-z0-9][A-Za-z0-9_.-]* (they name systemd units); C(all) is reserved."
        - Empty or null means the default split (see gpus_per_worker): one worker, named after the model, over every GPU.
      type: list
      elements: dict
      default: []
    overrides:
      description: "Explicit inventory values, C({all: {key: value}, <worker name>: {key: value}})."
      type: dict
      default: {}
    base_port:
      description: Port of the first worker when it sets none; worker N gets base_port + N (FastChat's model worker default 20002).
      type: int
      default: 20002
    taken_ports:
      description: Ports of the host's other services (controller, openai_api, API, WebUI) that no worker may use.
      type: list
      elements: int
      default: []
    reserve_mib:
      description: Memory per GPU held back from the KV cache for vLLM's activations and allocator slack.
      type: int
      default: 1024
    min_model_len:
      description: The shortest derived max_model_len accepted (or the model's own when that is shorter).
      type: int
      default: 2048
    gpus_per_worker:
      description:
        - Without explicit workers, split the host's GPUs (in index order) into workers of this many GPUs,
          named <model>-0, <model>-1, ... (the model's name alone when one set results). It must divide the GPU count.
        - Null means one worker over every GPU.
      type: int
      default: null
vllm_busy_gpus:
  name: vllm_busy_gpus
  short_description: The workers' GPUs whose memory other processes hold (vLLM would fail at load)
  description:
    - "For each vLLM worker (infer_turbo C(vllm)) and each of its GPUs: the memory other processes
      hold is the GPU's memory in use (memory_used_mib, every process, including those nvidia-smi
      cannot list, such as another container's) less what the host's own worker processes (own_pids)
      use. What is left must be at least the worker's share, gpu_memory_utilization x memory_mib, the
      share vllm_worker_profiles planned the weights and the KV cache in: vLLM 0.2 gives its KV cache
      that share less everything the GPU holds after loading, other processes' memory included, so it
      fails at load (no KV cache, or one too small for max_model_len). A plain model_worker
      (infer_turbo false) has no such share and is not checked."
    - "Returns one message per such GPU, naming the worker, the GPU index, the memory in use, the other
      processes (name, pid, MiB) and what to change: stop them, or lower gpu_memory_utilization in
      chatchat_vllm_overrides.<worker> (at most the share that is free). An empty list when every GPU
      has room. The caller adds the host's name."
    - "Fails (AnsibleFilterError) when a worker's GPU has no memory_used_mib and no processes (the GPU
      list was not read with nvidia_smi_gpus(usage=...): run gpu_preflight first) or is not in the list."
  positional: _input, workers, own_pids
  options:
    _input:
      description: The host's GPUs, C(gpu_preflight_gpus), with memory_mib, memory_used_mib and processes.
      type: list
      elements: dict
      required: true
    workers:
      description: The workers, C(chatchat_model_workers) (filter vllm_worker_profiles), each with name, gpus and gpu_memory_utilization.
      type: list
      elements: dict
      required: true
    own_pids:
      description: PIDs of the GPU processes that are this project's own workers (run by the Chatchat service account).
      type: list
      elements: int
      default: []
"""

EXAMPLES = r"""
vllm_worker_profiles: |
  - name: Derive the vLLM workers of this host
    ansible.builtin.set_fact:
      _chatchat_vllm_workers: >-
        {{ gpu_preflight_gpus | vllm_worker_profiles(chatchat_vllm_model,
             chatchat_fschat_model_workers_default, chatchat_vllm_workers,
             chatchat_vllm_overrides, taken_ports=[20000, 20001, 7861, 8501]) }}
    # with chatglm3-6b-32k (params_b 6.24, max_model_len 32768) on the l40x1 recording:
    # [{"name": "chatglm3-6b-32k", "model": "chatglm3-6b-32k", "gpus": [0], "cuda_visible_devices": "0",
    #   "num_gpus": 1, "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "max_model_len": 32768,
    #   "port": 20002, "infer_turbo": "vllm", "limit_worker_concurrency": 100, "max_gpu_memory": "44GiB",
    #   "sizing": {...}}]
    # (max_gpu_memory derived from the L40's 46068 MiB; on an A100 80GB it is "80GiB")

  # Two workers of two GPUs each on a four-GPU host, the second with a shorter context:
  # chatchat_vllm_workers:
  #   - {name: left, gpus: [0, 1]}
  #   - {name: right, gpus: [2, 3], port: 20012}
  # chatchat_vllm_overrides:
  #   all: {limit_worker_concurrency: 200}
  #   right: {max_model_len: 8192}
vllm_busy_gpus: |
  - name: Check that no other process holds the workers' GPUs
    ansible.builtin.assert:
      that: _busy | length == 0
      fail_msg: "host {{ inventory_hostname }}: {{ _busy | join('; ') }}"
    vars:
      _busy: "{{ gpu_preflight_gpus | vllm_busy_gpus(chatchat_model_workers, own_pids=[]) }}"
    # on the a100x1 recording (python3, pid 2471, holds 77852 MiB) with gpu_memory_utilization 0.95:
    # ["worker chatglm3-6b-32k: GPU 0 (NVIDIA A100-SXM4-80GB) has 77860 MiB of 81920 MiB in use, 77860 MiB of it
    #   held by processes that are not this project's workers: python3 (pid 2471, 77852 MiB); ..."]
"""

RETURN = r"""
vllm_worker_profiles:
  _value:
    description:
      - One dict per worker, in the order of workers. Every profile key is carried, with the keys below.
      - name, model, gpus, cuda_visible_devices and sizing describe the worker; the other keys are vLLM/FastChat worker arguments.
    type: list
    elements: dict
    contains:
      name: {description: The worker's name (the model's name for the default single worker)., type: str}
      model: {description: The model's name., type: str}
      gpus: {description: The GPU indexes of the worker., type: list, elements: int}
      cuda_visible_devices: {description: "The same indexes as CUDA_VISIBLE_DEVICES, for example C(0,1).", type: str}
      num_gpus: {description: Number of GPUs (equal to tensor_parallel_size)., type: int}
      tensor_parallel_size: {description: vLLM tensor parallel size., type: int}
      gpu_memory_utilization: {description: Fraction of each GPU's memory vLLM may use., type: float}
      max_model_len: {description: Longest sequence (prompt + answer) the worker accepts., type: int}
      port: {description: The worker's port., type: int}
      max_gpu_memory:
        description: "FastChat's per-GPU memory limit (plain model_worker), derived as the smallest GPU's whole GiB, for example C(80GiB)."
        type: str
      sizing:
        description: How the memory was shared, per GPU (MiB), for messages and tests; not a worker argument.
        type: dict
        contains:
          gpu_memory_mib: {description: Memory of the worker's smallest GPU., type: int}
          usable_mib: {description: gpu_memory_mib * gpu_memory_utilization., type: int}
          weights_mib: {description: Model weights per GPU., type: int}
          kv_cache_mib: {description: What is left for the KV cache per GPU., type: int}
          kv_cache_tokens: {description: Tokens the KV cache holds (null without kv_bytes_per_token)., type: int}
vllm_busy_gpus:
  _value:
    description: One message per worker GPU that other processes leave too little memory on; empty when none.
    type: list
    elements: str
"""

# Inventory variables named in error messages (the chatchat services role's names for the inputs).
VARIABLES: dict[str, str] = {
    "gpus": "gpu_preflight_gpus",
    "model": "chatchat_vllm_model",
    "profile": "chatchat_fschat_model_workers_default",
    "workers": "chatchat_vllm_workers",
    "overrides": "chatchat_vllm_overrides",
    "gpus_per_worker": "chatchat_vllm_gpus_per_worker",
}

MIB = 1024 * 1024
# vLLM's default KV cache block (tokens); its KV cache holds a whole number of blocks.
BLOCK_TOKENS = 16
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# Keys that describe the worker and never come from overrides.
WORKER_KEYS = ("name", "model", "gpus", "cuda_visible_devices", "sizing")
MODEL_FIELDS = {"name", "params_b", "dtype_bytes", "max_model_len", "kv_bytes_per_token",
                "num_attention_heads", "num_key_value_heads"}
WORKER_FIELDS = {"name", "gpus", "port"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# FastChat's --max-gpu-memory goes to accelerate's max_memory: a whole number and one of these units.
SIZE_RE = re.compile(r"^([0-9]+)(GiB|MiB|KiB|GB|MB|KB)$")
# Memory in use that no listed process accounts for is named in a message from this much on (the
# driver's own use is a few MiB).
UNLISTED_MIB = 1024
SIZE_BYTES = {"GiB": 2 ** 30, "MiB": 2 ** 20, "KiB": 2 ** 10, "GB": 10 ** 9, "MB": 10 ** 6, "KB": 10 ** 3}


def _show(value: Any) -> str:
    """A value as it would be written in the inventory."""
    return json.dumps(value, default=str)


def _fail(message: str) -> AnsibleFilterError:
    return AnsibleFilterError("vllm_worker_profiles: " + message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any, what: str, variable: str) -> int:
    if not _is_int(value) or value <= 0:
        raise _fail(f"{what} must be a positive integer, not {_show(value)}: fix {variable}")
    return value


def _check_gpus(gpus: Any) -> dict[int, dict[str, Any]]:
    variable = VARIABLES["gpus"]
    if not isinstance(gpus, list) or not gpus:
        raise _fail(f"{variable} must be the non-empty GPU list from gpu_preflight (filter nvidia_smi_gpus), "
                    f"got {_show(gpus)}: run the gpu_preflight role first, on a host with an NVIDIA GPU")
    by_index: dict[int, dict[str, Any]] = {}
    for position, gpu in enumerate(gpus):
        if not isinstance(gpu, dict) or not _is_int(gpu.get("index")) or not _is_int(gpu.get("memory_mib")) \
                or gpu["memory_mib"] <= 0:
            raise _fail(f"{variable}[{position}] must have an integer index and a positive integer memory_mib "
                        f"(filter nvidia_smi_gpus), got {_show(gpu)}")
        if gpu["index"] in by_index:
            raise _fail(f"{variable} lists GPU index {gpu['index']} twice")
        by_index[gpu["index"]] = gpu
    return by_index


def _check_model(model: Any) -> dict[str, Any]:
    variable = VARIABLES["model"]
    if not isinstance(model, dict):
        raise _fail(f"{variable} must be a mapping with name, params_b, max_model_len, got {_show(model)}")
    unknown = sorted(set(model) - MODEL_FIELDS)
    if unknown:
        raise _fail(f"{variable} has unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(MODEL_FIELDS))})")
    if not isinstance(model.get("name"), str) or not model["name"]:
        raise _fail(f"{variable}.name must be the model's name (a MODEL_PATH key), got {_show(model.get('name'))}")
    where = f"{variable} ({model['name']})"
    checked = dict(model)
    for field in ("params_b", "dtype_bytes"):
        value = model.get(field, 2 if field == "dtype_bytes" else None)
        if not _is_number(value) or value <= 0:
            raise _fail(f"{where}: {field} must be a positive number, not {_show(value)}")
        checked[field] = value
    checked["max_model_len"] = _positive_int(model.get("max_model_len"), f"{where}: max_model_len (the model's context length)", variable)
    for field in ("kv_bytes_per_token", "num_attention_heads", "num_key_value_heads"):
        if model.get(field) is not None:
            checked[field] = _positive_int(model[field], f"{where}: {field}", variable)
        else:
            checked[field] = None
    return checked


def _split_gpus(by_index: dict[int, dict[str, Any]], model_name: str, per_worker: Any) -> list[dict[str, Any]]:
    """The default workers: every GPU in one worker, or consecutive sets of per_worker GPUs."""
    indexes = sorted(by_index)
    if per_worker is None:
        return [{"name": model_name, "gpus": indexes}]
    variable = VARIABLES["gpus_per_worker"]
    if not _is_int(per_worker) or per_worker <= 0 or len(indexes) % per_worker:
        raise _fail(f"{variable} {_show(per_worker)} must be a positive integer that divides the host's "
                    f"{len(indexes)} GPU(s), or null for one worker over every GPU")
    sets = [indexes[start:start + per_worker] for start in range(0, len(indexes), per_worker)]
    if len(sets) == 1:
        return [{"name": model_name, "gpus": sets[0]}]
    return [{"name": f"{model_name}-{number}", "gpus": gpus} for number, gpus in enumerate(sets)]


def _check_workers(workers: Any, by_index: dict[int, dict[str, Any]], model_name: str,
                   per_worker: Any = None) -> list[dict[str, Any]]:
    variable = VARIABLES["workers"]
    if workers in (None, []):
        return _split_gpus(by_index, model_name, per_worker)
    if not isinstance(workers, list):
        raise _fail(f"{variable} must be a list of {{name, gpus, port}}, got {_show(workers)}")
    owner: dict[int, str] = {}
    names: set[str] = set()
    checked = []
    for position, worker in enumerate(workers):
        if not isinstance(worker, dict):
            raise _fail(f"{variable}[{position}] must be a mapping {{name, gpus, port}}, got {_show(worker)}")
        name = worker.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name) or name == "all":
            raise _fail(f"{variable}[{position}]: name {_show(name)} must match {NAME_RE.pattern} and not be 'all'")
        if name in names:
            raise _fail(f"{variable}: worker {name} appears twice: worker names must be unique")
        names.add(name)
        unknown = sorted(set(worker) - WORKER_FIELDS)
        if unknown:
            raise _fail(f"{variable} worker {name}: unknown field(s) {', '.join(unknown)} (allowed: name, gpus, port; "
                        f"put vLLM values in {VARIABLES['overrides']}.{name})")
        gpus = worker.get("gpus")
        if not isinstance(gpus, list) or not gpus:
            raise _fail(f"{variable} worker {name}: gpus must be a non-empty list of GPU indexes, got {_show(gpus)}")
        for index in gpus:
            if not _is_int(index) or index not in by_index:
                raise _fail(f"{variable} worker {name}: GPU {_show(index)} is not on this host "
                            f"({VARIABLES['gpus']} has {_show(sorted(by_index))})")
            if index in owner:
                other = owner[index]
                raise _fail(f"{variable} worker {name}: GPU {index} is "
                            + ("listed twice" if other == name else f"already in worker {other}")
                            + ": a GPU belongs to one worker")
            owner[index] = name
        entry = {"name": name, "gpus": list(gpus)}
        if "port" in worker:
            entry["port"] = worker["port"]
        checked.append(entry)
    return checked


def _check_overrides(overrides: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    variable = VARIABLES["overrides"]
    if overrides in (None, {}):
        return {}
    if not isinstance(overrides, dict):
        raise _fail(f"{variable} must be a mapping {{all: {{...}}, <worker name>: {{...}}}}, got {_show(overrides)}")
    for key, values in overrides.items():
        if key != "all" and key not in names:
            raise _fail(f"{variable}.{key}: no worker is named {key} (workers: {', '.join(names)}; "
                        "use 'all' for every worker)")
        if not isinstance(values, dict):
            raise _fail(f"{variable}.{key} must be a mapping of worker values, got {_show(values)}")
        reserved = sorted(set(values) & set(WORKER_KEYS))
        if reserved:
            raise _fail(f"{variable}.{key} cannot set {', '.join(reserved)}: a worker's GPUs are set in {VARIABLES['workers']}")
    return overrides


def _source(overrides: dict[str, dict[str, Any]], name: str, key: str, default: str) -> str:
    """The inventory variable that set a worker's value: its own override, the 'all' override or default."""
    for scope in (name, "all"):
        if key in overrides.get(scope, {}):
            return f"{VARIABLES['overrides']}.{scope}.{key}"
    return default


def _parallelism(profile: dict[str, Any], model: dict[str, Any], where: str, source: str) -> int:
    """Check num_gpus and tensor_parallel_size against the worker's GPUs and the model's heads."""
    count = len(profile["gpus"])
    tp = profile["tensor_parallel_size"]
    if not _is_int(tp) or tp <= 0:
        raise _fail(f"{where}: tensor_parallel_size must be a positive integer, not {_show(tp)}: fix {source}")
    if tp != count:
        if tp > count:
            problem = f"is more than its {count} GPU(s)"
        elif count % tp:
            problem = f"does not divide its {count} GPU(s)"
        else:
            problem = f"would leave {count - tp} of its {count} GPUs idle (vLLM 0.2 has no pipeline parallelism)"
        raise _fail(f"{where}: tensor_parallel_size {tp} {problem}: it must equal the number of GPUs "
                    f"{_show(profile['gpus'])}; fix {source} or the worker's gpus in {VARIABLES['workers']}")
    if profile["num_gpus"] != tp:
        raise _fail(f"{where}: num_gpus {_show(profile['num_gpus'])} differs from tensor_parallel_size {tp} "
                    f"(FastChat sets tensor parallelism from num_gpus): fix {source}")
    heads = model["num_attention_heads"]
    if heads is not None and heads % tp:
        raise _fail(f"{where}: the model's {heads} attention heads do not divide by tensor_parallel_size {tp}: "
                    f"give the worker a GPU count that divides {heads} in {VARIABLES['workers']}")
    kv_heads = model["num_key_value_heads"]
    if kv_heads is not None and kv_heads % tp and tp % kv_heads:
        raise _fail(f"{where}: the model's {kv_heads} key/value heads and tensor_parallel_size {tp} do not divide "
                    f"one another: give the worker a GPU count that divides or is a multiple of {kv_heads} "
                    f"in {VARIABLES['workers']}")
    return tp


def _sizing(profile: dict[str, Any], model: dict[str, Any], by_index: dict[int, dict[str, Any]],
            reserve_mib: int, where: str, source: str) -> dict[str, Any]:
    """Share one GPU's memory (the worker's smallest) between the weights and the KV cache."""
    utilization = profile["gpu_memory_utilization"]
    if not _is_number(utilization) or not 0 < utilization <= 1:
        raise _fail(f"{where}: gpu_memory_utilization {_show(utilization)} must be in (0, 1]: fix {source}")
    tp = profile["tensor_parallel_size"]
    memory_mib = min(by_index[index]["memory_mib"] for index in profile["gpus"])
    usable = memory_mib * MIB * utilization
    weights = model["params_b"] * 1e9 * model["dtype_bytes"] / tp
    kv_cache = usable - weights - reserve_mib * MIB
    sizing = {"gpu_memory_mib": memory_mib, "usable_mib": int(usable // MIB), "weights_mib": math.ceil(weights / MIB),
              "kv_cache_mib": int(kv_cache // MIB), "kv_cache_tokens": None}
    if kv_cache <= 0:
        raise _fail(
            f"{where}: the model {model['name']} over-commits GPU memory: {sizing['weights_mib']} MiB of weights per GPU "
            f"({model['params_b']}B parameters x {model['dtype_bytes']} bytes / tensor_parallel_size {tp}) plus "
            f"{reserve_mib} MiB of runtime reserve do not fit in {sizing['usable_mib']} MiB "
            f"({memory_mib} MiB x gpu_memory_utilization {utilization}): give the worker more GPUs in "
            f"{VARIABLES['workers']}, serve a smaller model ({VARIABLES['model']}) or raise gpu_memory_utilization "
            f"in {source}")
    if model["kv_bytes_per_token"] is not None:
        kv_heads = model["num_key_value_heads"]
        # A GPU holds kv_heads/tp heads, at least one (vLLM replicates them when tp > kv_heads).
        shards = min(tp, kv_heads) if kv_heads else tp
        sizing["kv_cache_tokens"] = int(kv_cache // (model["kv_bytes_per_token"] / shards)) // BLOCK_TOKENS * BLOCK_TOKENS
    return sizing


def _check_max_gpu_memory(values: dict[str, Any], gpu_memory_mib: int, where: str, source: str) -> None:
    """An explicit max_gpu_memory must be readable by accelerate and fit on the worker's smallest GPU."""
    limit = values.get("max_gpu_memory")
    if limit is None:
        return
    derived = f"{gpu_memory_mib // 1024}GiB"
    size = SIZE_RE.match(limit) if isinstance(limit, str) else None
    if size is None:
        raise _fail(f"{where}: max_gpu_memory {_show(limit)} must be a whole number followed by GiB, MiB, GB or MB "
                    f"(as FastChat passes it to accelerate), for example {_show(derived)}: fix {source}, or remove it "
                    "there to derive it from the GPU memory")
    limit_mib = int(size.group(1)) * SIZE_BYTES[size.group(2)] / MIB
    if limit_mib > gpu_memory_mib:
        raise _fail(f"{where}: max_gpu_memory {_show(limit)} is more than the {gpu_memory_mib} MiB of its smallest GPU: "
                    f"set at most {_show(derived)} in {source}, or remove it there to derive it from the GPU memory")


def vllm_worker_profiles(gpus: list[dict[str, Any]], model: dict[str, Any], profile: dict[str, Any],
                         workers: list[dict[str, Any]] | None = None,
                         overrides: dict[str, dict[str, Any]] | None = None,
                         base_port: int = 20002, taken_ports: list[int] | None = None,
                         reserve_mib: int = 1024, min_model_len: int = 2048,
                         gpus_per_worker: int | None = None) -> list[dict[str, Any]]:
    """One vLLM worker profile per GPU set of the host, derived from its GPUs, the model and the group's tuning."""
    by_index = _check_gpus(gpus)
    model = _check_model(model)
    if not isinstance(profile, dict):
        raise _fail(f"{VARIABLES['profile']} must be a mapping of worker values, got {_show(profile)}")
    planned = _check_workers(workers, by_index, model["name"], gpus_per_worker)
    names = [worker["name"] for worker in planned]
    overrides = _check_overrides(overrides, names)
    for label, value in (("base_port", base_port), ("reserve_mib", reserve_mib), ("min_model_len", min_model_len)):
        if not _is_int(value) or value < 0:
            raise _fail(f"{label} must be a non-negative integer, not {_show(value)}")
    reserved: dict[int, str] = {}
    for port in taken_ports or []:
        if not _is_int(port):
            raise _fail(f"taken_ports must be integers, got {_show(port)}")
        reserved[port] = "another service of this host"

    result = []
    for number, worker in enumerate(planned):
        name = worker["name"]
        where = f"worker {name}"
        pinned = {**overrides.get("all", {}), **overrides.get(name, {})}

        derived = {
            "num_gpus": len(worker["gpus"]),
            "tensor_parallel_size": len(worker["gpus"]),
            "gpu_memory_utilization": profile.get("gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION),
            "port": worker.get("port", base_port + number),
        }
        # Below the profile: an explicit max_gpu_memory (profile or overrides) wins over the GPU's own.
        smallest_mib = min(by_index[index]["memory_mib"] for index in worker["gpus"])
        fallback = {"max_gpu_memory": f"{smallest_mib // 1024}GiB"}
        # The profile's num_gpus, tensor_parallel_size, max_model_len and port give way to derived values.
        values = {**fallback, **profile, **derived, **pinned,
                  "name": name, "model": model["name"], "gpus": worker["gpus"],
                  "cuda_visible_devices": ",".join(str(index) for index in worker["gpus"])}
        # Name the variable that set each checked value.
        tp_source = _source(overrides, name, "tensor_parallel_size",
                            _source(overrides, name, "num_gpus", VARIABLES["workers"]))
        util_source = _source(overrides, name, "gpu_memory_utilization", VARIABLES["profile"])
        len_source = _source(overrides, name, "max_model_len", VARIABLES["model"])
        _parallelism(values, model, where, tp_source)
        sizing = _sizing(values, model, by_index, reserve_mib, where, util_source)
        _check_max_gpu_memory(values, sizing["gpu_memory_mib"], where,
                              _source(overrides, name, "max_gpu_memory", VARIABLES["profile"]))
        fits = sizing["kv_cache_tokens"]
        if "max_model_len" in pinned:
            length = pinned["max_model_len"]
            if not _is_int(length) or length <= 0:
                raise _fail(f"{where}: max_model_len must be a positive integer, not {_show(length)}: fix {len_source}")
            if length > model["max_model_len"]:
                raise _fail(f"{where}: max_model_len {length} is longer than the model's {model['max_model_len']} "
                            f"({VARIABLES['model']}): fix {len_source}")
            if fits is not None and length > fits:
                raise _fail(f"{where}: max_model_len {length} does not fit: the KV cache holds {fits} tokens "
                            f"({sizing['kv_cache_mib']} MiB per GPU): lower it in {len_source} or give the worker more GPUs")
        else:
            length = model["max_model_len"] if fits is None else min(model["max_model_len"], fits)
            floor = min(min_model_len, model["max_model_len"])
            if length < floor:
                raise _fail(f"{where}: only {length} tokens of KV cache fit ({sizing['kv_cache_mib']} MiB per GPU after "
                            f"{sizing['weights_mib']} MiB of weights), under the minimum {floor}: give the worker more "
                            f"GPUs in {VARIABLES['workers']} or raise gpu_memory_utilization in {util_source}")
        values["max_model_len"] = length
        values["sizing"] = sizing
        port = values["port"]
        port_source = _source(overrides, name, "port", VARIABLES["workers"])
        if not _is_int(port) or not 1 <= port <= 65535:
            raise _fail(f"{where}: port {_show(port)} must be an integer in 1-65535: fix {port_source}")
        if port in reserved:
            raise _fail(f"{where}: port {port} is already used by {reserved[port]}: fix {port_source}")
        reserved[port] = f"worker {name}"
        result.append(values)
    return result


def _busy_fail(message: str) -> AnsibleFilterError:
    return AnsibleFilterError("vllm_busy_gpus: " + message)


def _pid(value: Any) -> int:
    if _is_int(value):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _busy_fail(f"own_pids must be process ids, got {_show(value)}")


def vllm_busy_gpus(gpus: list[dict[str, Any]], workers: list[dict[str, Any]],
                   own_pids: list[int] | None = None) -> list[str]:
    """One message per worker GPU on which other processes leave less than the worker's share of memory."""
    variable = VARIABLES["gpus"]
    if not isinstance(gpus, list) or not all(isinstance(g, dict) and _is_int(g.get("index")) for g in gpus):
        raise _busy_fail(f"{variable} must be the GPU list from gpu_preflight, got {_show(gpus)}")
    if not isinstance(workers, list) or not all(isinstance(w, dict) for w in workers):
        raise _busy_fail(f"workers must be the list from vllm_worker_profiles, got {_show(workers)}")
    own = {_pid(pid) for pid in own_pids or []}
    by_index = {gpu["index"]: gpu for gpu in gpus}
    problems = []
    for worker in workers:
        if worker.get("infer_turbo") != "vllm":
            continue  # FastChat's plain model_worker has no gpu_memory_utilization share
        name, utilization = worker.get("name"), worker.get("gpu_memory_utilization")
        if not _is_number(utilization) or not 0 < utilization <= 1:
            raise _busy_fail(f"worker {name}: gpu_memory_utilization {_show(utilization)} must be in (0, 1]")
        for index in worker.get("gpus") or []:
            gpu = by_index.get(index)
            if gpu is None:
                raise _busy_fail(f"worker {name}: GPU {_show(index)} is not in {variable} ({_show(sorted(by_index))})")
            total = gpu.get("memory_mib")
            if not _is_int(total) or total <= 0 or ("memory_used_mib" not in gpu and "processes" not in gpu):
                raise _busy_fail(f"{variable} GPU {index} has no memory_mib, memory_used_mib or processes: run the "
                                 "gpu_preflight role's preflight first (it reads them from the nvidia-smi table)")
            processes = gpu.get("processes") or []
            mine = [p for p in processes if p.get("pid") in own]
            others = [p for p in processes if p.get("pid") not in own]
            listed = sum(p.get("used_mib") or 0 for p in others)
            used = gpu.get("memory_used_mib")
            if used is None or any(p.get("used_mib") is None for p in mine):
                held = listed  # what the table shows of the other processes
            else:
                held = max(0, used - sum(p["used_mib"] for p in mine))
            share = utilization * total
            left = total - held
            if left >= share:
                continue
            holders = [f"{p.get('name')} (pid {p.get('pid')}, "
                       + ("memory not shown" if p.get("used_mib") is None else f"{p['used_mib']} MiB") + ")"
                       for p in others]
            if held - listed > UNLISTED_MIB or not others:
                holders.append(f"{held - listed} MiB held by no process nvidia-smi lists (processes of another "
                               "container or VM, which it cannot show)")
            in_use = (f"{used} MiB of {total} MiB in use" if used is not None
                      else f"{total} MiB (nvidia-smi shows no total in use)")
            most = math.floor(left / total * 100) / 100
            change = (f"lower gpu_memory_utilization to at most {most} in {VARIABLES['overrides']}.{name} "
                      f"(or {VARIABLES['overrides']}.all)"
                      if most > 0 else f"give the worker other GPUs in {VARIABLES['workers']}")
            problems.append(
                f"worker {name}: GPU {index} ({gpu.get('name', 'GPU')}) has {in_use}, {held} MiB of it held by "
                f"processes that are not this project's workers: {', '.join(holders)}; {left} MiB are left, less than "
                f"the worker's share of {math.ceil(share)} MiB (gpu_memory_utilization {utilization} x {total} MiB) that its "
                f"weights and KV cache were planned in, so vLLM would fail at load. Stop those processes, or {change}")
    return problems


class FilterModule:
    """vLLM worker profile filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"vllm_worker_profiles": vllm_worker_profiles, "vllm_busy_gpus": vllm_busy_gpus}
