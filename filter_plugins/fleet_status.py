"""One table of the fleet from what playbooks/status.yml collected on each node.

ansible-doc reads one documentation block per plugin file: DOCUMENTATION, EXAMPLES and RETURN are
YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
fleet_status_table:
  name: fleet_status_table
  short_description: The fleet's status as the lines of a fixed-width table
  description:
    - Takes one entry per node (host, the node status script's JSON, the chatchat_health_result record or none) and
      returns the lines of a table - host, GPUs, driver/CUDA, release, fschat and its patch, model revisions
      (12 characters), services (active/total, the others named), health (healthy, or the first problem).
  positional: _input
  options:
    _input: {description: "A list of {host, status, health}.", type: list, elements: dict, required: true}
"""

EXAMPLES = r"""
fleet_status_table: |
  lines: "{{ nodes | fleet_status_table }}"
"""

RETURN = r"""
fleet_status_table:
  description: The header, a rule and one line per node.
  type: list
  elements: str
"""

COLUMNS = ("host", "gpu", "driver/cuda", "release", "fschat", "models", "services", "health")


def _cells(node: dict[str, Any]) -> list[str]:
    status = node.get("status") or {}
    gpu = status.get("gpu")
    fschat = status.get("fschat") or {}
    services = status.get("services") or {}
    health = node.get("health")
    down = sorted(unit for unit, state in services.items() if state != "active")
    if health is None:
        health_cell = "-"
    elif health.get("healthy"):
        health_cell = "healthy"
    else:
        problems = health.get("problems") or ["unhealthy"]
        health_cell = "UNHEALTHY: " + problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    return [
        str(node.get("host", "?")),
        f"{gpu['count']}x {gpu['model']}" if gpu else "-",
        f"{gpu['driver']}/{gpu['cuda']}" if gpu else "-",
        status.get("release") or "-",
        f"{fschat['version']} ({fschat.get('patch', '?')})" if fschat.get("version") else fschat.get("patch", "-"),
        ", ".join(f"{name}@{rev[:12]}" for name, rev in sorted((status.get("models") or {}).items())) or "-",
        (f"{len(services) - len(down)}/{len(services)} active" + (f" (down: {', '.join(down)})" if down else ""))
        if services else "-",
        health_cell,
    ]


def fleet_status_table(nodes: list[dict[str, Any]]) -> list[str]:
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise AnsibleFilterError("fleet_status_table expects a list of {host, status, health} entries")
    rows = [list(COLUMNS)] + [_cells(node) for node in nodes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return lines


class FilterModule:
    """Fleet status table filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"fleet_status_table": fleet_status_table}
