"""Filters that parse nvidia-smi output (used by the gpu_preflight role).

This file holds four filters. ansible-doc reads one documentation block per
plugin file, so the DOCUMENTATION, EXAMPLES and RETURN blocks below are YAML
mappings keyed by filter name, each value written in ansible's filter plugin
documentation format (tests/unit/plugins/filter/test_nvidia_smi.py checks that
every filter has all three).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
nvidia_smi_header:
  name: nvidia_smi_header
  short_description: Driver and CUDA versions from the plain C(nvidia-smi) table
  description:
    - Parses the header of the table printed by C(nvidia-smi) without arguments
      (both the 79-column layout of drivers before 530 and the 89-column layout since).
    - Fails with a clear message when the text is nvidia-smi's own failure message,
      for example when it cannot communicate with the NVIDIA driver (exit code 9).
  positional: _input
  options:
    _input:
      description: The standard output of C(nvidia-smi), as a string or a list of lines.
      type: raw
      required: true
nvidia_smi_usage:
  name: nvidia_smi_usage
  short_description: Memory in use and the processes of each GPU, from the plain C(nvidia-smi) table
  description:
    - "Parses the table printed by C(nvidia-smi) without arguments (the 79-column layout of drivers
      before 530 and the 89-column layout since): each GPU's C(Memory-Usage) cell
      (C(77860MiB / 81920MiB)) and the C(Processes:) table (GPU, GI, CI, PID, type, process name,
      GPU memory; also the older table without GI and CI columns). C(No running processes found)
      gives no processes."
    - What the memory is used by changes from one run to the next; nothing that must stay the same
      between runs (a fact file) should hold it.
    - Fails on nvidia-smi's failure messages, on text that is not the table, and on a process row it
      cannot read or that names a GPU the table does not list.
  positional: _input
  options:
    _input:
      description: The standard output of C(nvidia-smi), as a string or a list of lines.
      type: raw
      required: true
nvidia_smi_gpus:
  name: nvidia_smi_gpus
  short_description: GPU list from C(nvidia-smi --query-gpu=...) CSV output
  description:
    - Parses the output of
      C(nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id --format=csv,noheader,nounits),
      one line per GPU, fields separated by C(", ").
    - Fails on nvidia-smi's failure messages, on a CSV header or units (use C(noheader,nounits)),
      and on lines that do not have exactly those six fields.
    - Empty output gives an empty list.
    - With C(usage) (the result of C(nvidia_smi_usage) over the plain table), each GPU also gets
      C(memory_used_mib) and C(processes) from the table's entry with its index; a GPU of the query
      missing from the table, or one of the table missing from the query, fails.
  positional: _input
  options:
    _input:
      description: The standard output of the query, as a string or a list of lines.
      type: raw
      required: true
    usage:
      description: The plain table's usage per GPU (filter C(nvidia_smi_usage)); null adds nothing.
      type: list
      elements: dict
      default: null
gpu_model_family:
  name: gpu_model_family
  short_description: GPU family token of an NVIDIA GPU name
  description:
    - Maps a GPU name as nvidia-smi reports it to a short lower-case family token used to match
      host groups, for example C(NVIDIA L40) to C(l40), C(NVIDIA A100-SXM4-80GB) and
      C(NVIDIA A100 80GB PCIe) to C(a100), C(NVIDIA H100 80GB HBM3) to C(h100).
    - The vendor and brand words C(NVIDIA), C(Tesla), C(GeForce) and C(Quadro) are dropped; the first
      remaining word, cut at the first C(-), is the family. C(RTX)/C(GTX) keep the model number
      (C(NVIDIA GeForce RTX 4090) gives C(rtx4090)). C(NVIDIA L40S) gives C(l40s), a different GPU from C(l40).
  positional: _input
  options:
    _input:
      description: A GPU name such as C(NVIDIA A100-SXM4-80GB).
      type: str
      required: true
"""

EXAMPLES = r"""
nvidia_smi_header: |
  - name: Run nvidia-smi
    ansible.builtin.command:
      argv: [nvidia-smi]
    register: __smi
    changed_when: false
    check_mode: false

  - name: Show the driver and CUDA versions
    ansible.builtin.debug:
      msg: "{{ (__smi.stdout | nvidia_smi_header).driver_version }}"
    # {"driver_version": "535.129.03", "cuda_version": "12.2"}
nvidia_smi_usage: |
  - name: Run nvidia-smi
    ansible.builtin.command:
      argv: [nvidia-smi]
    register: __smi
    changed_when: false
    check_mode: false

  - name: Show what holds GPU memory
    ansible.builtin.debug:
      msg: "{{ __smi.stdout | nvidia_smi_usage }}"
    # the a100x1 recording:
    # [{"index": 0, "memory_used_mib": 77860, "memory_total_mib": 81920,
    #   "processes": [{"pid": 2471, "type": "C", "name": "python3", "used_mib": 77852}]}]
nvidia_smi_gpus: |
  - name: Query the GPUs
    ansible.builtin.command:
      argv:
        - nvidia-smi
        - --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id
        - --format=csv,noheader,nounits
    register: __query
    changed_when: false
    check_mode: false

  - name: Count them
    ansible.builtin.debug:
      msg: "{{ __query.stdout | nvidia_smi_gpus | length }} GPUs"
    # [{"index": 0, "name": "NVIDIA L40", "uuid": "GPU-5c4a...", "memory_mib": 46068,
    #   "driver_version": "535.129.03", "pci_bus_id": "00000000:17:00.0"}]

  - name: The GPUs with the memory in use and their processes (the plain table's, registered as __smi)
    ansible.builtin.set_fact:
      gpus: "{{ __query.stdout | nvidia_smi_gpus(usage=__smi.stdout | nvidia_smi_usage) }}"
    # [{"index": 0, ..., "memory_mib": 46068, "memory_used_mib": 4, "processes": []}]
gpu_model_family: |
  - name: Family of the first GPU
    ansible.builtin.debug:
      msg: "{{ 'NVIDIA A100-SXM4-80GB' | gpu_model_family }}"
    # "a100"
"""

RETURN = r"""
nvidia_smi_header:
  _value:
    description: The versions from the table header.
    type: dict
    contains:
      driver_version:
        description: NVIDIA driver version, for example C(535.129.03).
        type: str
      cuda_version:
        description: Highest CUDA version the driver supports, for example C(12.2).
        type: str
nvidia_smi_usage:
  _value:
    description: One dictionary per GPU of the table, in its order.
    type: list
    elements: dict
    contains:
      index:
        description: GPU index.
        type: int
      memory_used_mib:
        description: Memory in use on the GPU (every process, seen or not), MiB; null when the table shows none.
        type: int
      memory_total_mib:
        description: Total memory as the table shows it, MiB; null when it shows none.
        type: int
      processes:
        description: "The GPU's processes, each {pid (int), type (C, G, C+G, ...), name (as nvidia-smi
          prints it, possibly cut to ...<end of the path>), used_mib (int, null when nvidia-smi shows N/A)}."
        type: list
        elements: dict
nvidia_smi_gpus:
  _value:
    description: One dictionary per GPU, in the order nvidia-smi lists them.
    type: list
    elements: dict
    contains:
      index:
        description: GPU index.
        type: int
      name:
        description: Product name, for example C(NVIDIA A100-SXM4-80GB).
        type: str
      uuid:
        description: GPU UUID (C(GPU-...)).
        type: str
      memory_mib:
        description: Total memory in MiB.
        type: int
      driver_version:
        description: Driver version.
        type: str
      pci_bus_id:
        description: PCI bus id, for example C(00000000:07:00.0).
        type: str
      memory_used_mib:
        description: Only with C(usage), the GPU's memory in use (MiB).
        type: int
      processes:
        description: Only with C(usage), the GPU's processes (see C(nvidia_smi_usage)).
        type: list
        elements: dict
gpu_model_family:
  _value:
    description: Lower-case family token, for example C(l40), C(a100), C(h100).
    type: str
"""

# The --query-gpu field list nvidia_smi_gpus parses, in order.
QUERY_GPU_FIELDS: tuple[str, ...] = ("index", "name", "uuid", "memory.total", "driver_version", "pci.bus_id")
_RESULT_KEYS: tuple[str, ...] = ("index", "name", "uuid", "memory_mib", "driver_version", "pci_bus_id")

# Messages nvidia-smi prints (on stdout) instead of its output when it cannot work.
_FAILURES: tuple[tuple[str, str], ...] = (
    ("couldn't communicate with the nvidia driver", "nvidia-smi could not communicate with the NVIDIA driver (driver not installed or not loaded)"),
    ("nvidia-smi has failed", "nvidia-smi failed"),
    ("no devices were found", "nvidia-smi found no NVIDIA GPU"),
    ("driver/library version mismatch", "the loaded NVIDIA kernel module and the NVIDIA user-space libraries differ (reboot or reload the driver)"),
)
_DRIVER_RE = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_CUDA_RE = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")
_BRAND_WORDS = frozenset({"nvidia", "tesla", "geforce", "quadro"})
# The plain table. A GPU block starts with the row holding its index and PCI bus id; the next row
# holds its Memory-Usage cell. The MIG devices table (also with MiB / MiB cells) and the processes
# table follow the GPU blocks.
_GPU_ROW_RE = re.compile(r"^\|\s*(\d+)\s.*\|\s*[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]\s")
_MEMORY_CELL_RE = re.compile(r"\|\s*(?:(\d+)MiB|N/A)\s*/\s*(?:(\d+)MiB|N/A)\s*\|")
# A processes row: GPU, GI and CI (absent before driver 450), PID, type (C, G, C+G, M, M+C), name, memory.
_PROCESS_ROW_RE = re.compile(
    r"^\|\s*(?P<gpu>\d+)\s+(?:(?P<gi>N/A|\d+)\s+(?P<ci>N/A|\d+)\s+)?(?P<pid>\d+)\s+"
    r"(?P<type>[A-Z](?:\+[A-Z])*)\s+(?P<name>\S.*?)\s+(?:(?P<used>\d+)\s*MiB|N/A)\s*\|$"
)
_NO_PROCESSES = "no running processes found"


def _text(data: Any, filter_name: str) -> str:
    """Accept a string or a list of lines (stdout_lines)."""
    if isinstance(data, (list, tuple)):
        if not all(isinstance(line, str) for line in data):
            raise AnsibleFilterError(f"{filter_name}: expected nvidia-smi output as text or a list of lines")
        return "\n".join(data)
    if not isinstance(data, str):
        raise AnsibleFilterError(f"{filter_name}: expected nvidia-smi output as text, got {type(data).__name__}")
    return data


def _raise_on_failure(text: str, filter_name: str) -> None:
    lowered = text.lower()
    for needle, meaning in _FAILURES:
        if needle in lowered:
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            raise AnsibleFilterError(f"{filter_name}: {meaning}: {first}")


def nvidia_smi_header(data: str | list[str]) -> dict[str, str]:
    """Return driver_version and cuda_version from the plain nvidia-smi table."""
    text = _text(data, "nvidia_smi_header")
    _raise_on_failure(text, "nvidia_smi_header")
    driver = _DRIVER_RE.search(text)
    cuda = _CUDA_RE.search(text)
    if driver is None or cuda is None:
        missing = " and ".join(label for label, m in (("'Driver Version:'", driver), ("'CUDA Version:'", cuda)) if m is None)
        raise AnsibleFilterError(f"nvidia_smi_header: not the nvidia-smi table: no {missing} found in {text[:120]!r}")
    return {"driver_version": driver.group(1).rstrip("."), "cuda_version": cuda.group(1).rstrip(".")}


def _mib(value: str | None) -> int | None:
    """A MiB figure of the table; None where it shows N/A."""
    return None if value is None else int(value)


def nvidia_smi_usage(data: str | list[str]) -> list[dict[str, Any]]:
    """Return each GPU's memory in use and its processes from the plain nvidia-smi table."""
    text = _text(data, "nvidia_smi_usage")
    _raise_on_failure(text, "nvidia_smi_usage")
    if _DRIVER_RE.search(text) is None:
        raise AnsibleFilterError(f"nvidia_smi_usage: not the nvidia-smi table: no 'Driver Version:' found in {text[:120]!r}")
    gpus: list[dict[str, Any]] = []
    by_index: dict[int, dict[str, Any]] = {}
    section = "gpus"  # then "mig" (the MIG devices table, skipped), "processes" (its header), "process rows"
    current: dict[str, Any] | None = None
    memory_read: set[int] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if "MIG devices:" in line:
            section = "mig"
            continue
        if "Processes:" in line:
            section = "processes"
            continue
        if section == "gpus":
            row = _GPU_ROW_RE.match(line)
            if row:
                index = int(row.group(1))
                if index in by_index:
                    raise AnsibleFilterError(f"nvidia_smi_usage: line {lineno}: GPU {index} appears twice in the table")
                current = {"index": index, "memory_used_mib": None, "memory_total_mib": None, "processes": []}
                by_index[index] = current
                gpus.append(current)
                continue
            memory = _MEMORY_CELL_RE.search(line)
            if memory and current is not None and current["index"] not in memory_read:
                current["memory_used_mib"], current["memory_total_mib"] = _mib(memory.group(1)), _mib(memory.group(2))
                memory_read.add(current["index"])
        elif section == "processes":
            if line.startswith("|="):
                section = "process rows"
        elif section == "process rows":
            if line.startswith("+") or not line.strip():
                section = "done"
                continue
            if _NO_PROCESSES in line.lower():
                continue
            process = _PROCESS_ROW_RE.match(line)
            if process is None:
                raise AnsibleFilterError(f"nvidia_smi_usage: line {lineno} is not a process row "
                                         f"(GPU, GI, CI, PID, type, name, memory): {line!r}")
            index = int(process.group("gpu"))
            if index not in by_index:
                raise AnsibleFilterError(f"nvidia_smi_usage: line {lineno}: a process on GPU {index}, "
                                         f"which the table does not list ({sorted(by_index)}): {line!r}")
            used = process.group("used")
            by_index[index]["processes"].append({
                "pid": int(process.group("pid")), "type": process.group("type"), "name": process.group("name"),
                "used_mib": None if used is None else int(used)})
    return gpus


def _add_usage(gpus: list[dict[str, Any]], usage: Any) -> list[dict[str, Any]]:
    if not isinstance(usage, list) or not all(isinstance(u, dict) and isinstance(u.get("index"), int) for u in usage):
        raise AnsibleFilterError(f"nvidia_smi_gpus: usage must be the result of nvidia_smi_usage, got {usage!r}")
    by_index = {u["index"]: u for u in usage}
    query, table = sorted(g["index"] for g in gpus), sorted(by_index)
    if query != table:
        raise AnsibleFilterError(f"nvidia_smi_gpus: the query lists GPUs {query} but the nvidia-smi table {table}: "
                                 "the GPUs changed between the two calls, run again")
    return [{**gpu, "memory_used_mib": by_index[gpu["index"]]["memory_used_mib"],
             "processes": [dict(p) for p in by_index[gpu["index"]]["processes"]]} for gpu in gpus]


def _int_field(value: str, field: str, lineno: int, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        hint = " (units in the output: use --format=csv,noheader,nounits)" if re.search(r"[A-Za-z]", value) else ""
        raise AnsibleFilterError(f"nvidia_smi_gpus: line {lineno}: {field} {value!r} is not an integer{hint}: {line!r}") from None


def nvidia_smi_gpus(data: str | list[str], usage: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Return one dict per GPU from --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id CSV.

    With usage (nvidia_smi_usage of the plain table), each GPU also gets memory_used_mib and processes.
    """
    text = _text(data, "nvidia_smi_gpus")
    _raise_on_failure(text, "nvidia_smi_gpus")
    gpus: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if fields[0] == "index" or "memory.total" in fields[3:4]:
            raise AnsibleFilterError(f"nvidia_smi_gpus: line {lineno} is a CSV header: use --format=csv,noheader,nounits")
        if len(fields) != len(QUERY_GPU_FIELDS):
            raise AnsibleFilterError(
                f"nvidia_smi_gpus: line {lineno} has {len(fields)} fields, expected {len(QUERY_GPU_FIELDS)} "
                f"({','.join(QUERY_GPU_FIELDS)}): {line!r}"
            )
        gpu = dict(zip(_RESULT_KEYS, fields))
        gpu["index"] = _int_field(gpu["index"], "index", lineno, line)
        gpu["memory_mib"] = _int_field(gpu["memory_mib"], "memory.total", lineno, line)
        if not gpu["name"]:
            raise AnsibleFilterError(f"nvidia_smi_gpus: line {lineno} has an empty GPU name: {line!r}")
        gpus.append(gpu)
    return gpus if usage is None else _add_usage(gpus, usage)


def gpu_model_family(name: str) -> str:
    """Map an NVIDIA GPU name to its family token (l40, a100, h100, ...)."""
    if not isinstance(name, str) or not name.strip():
        raise AnsibleFilterError(f"gpu_model_family: expected a GPU name, got {name!r}")
    words = [word for word in name.lower().split() if word not in _BRAND_WORDS]
    if not words:
        raise AnsibleFilterError(f"gpu_model_family: no model in GPU name {name!r}")
    if words[0] in ("rtx", "gtx") and len(words) > 1:
        return words[0] + words[1].split("-")[0]
    return words[0].split("-")[0]


class FilterModule:
    """nvidia-smi parsing filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "nvidia_smi_header": nvidia_smi_header,
            "nvidia_smi_usage": nvidia_smi_usage,
            "nvidia_smi_gpus": nvidia_smi_gpus,
            "gpu_model_family": gpu_model_family,
        }
