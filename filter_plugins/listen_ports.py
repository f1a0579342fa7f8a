"""Which of a service's ports another process already listens on (from `ss -Hltnp`).

Used by preflights (the milvus role) to stop before a host is changed when a port is taken.
ansible-doc reads one documentation block per plugin file: DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
listen_port_conflicts:
  name: listen_port_conflicts
  short_description: The ports of a list that a process not in `owners` listens on
  description:
    - Parses `ss -H -l -t -n -p` output (one listening socket per line, with the users:(("name",pid=N,...))
      column) and returns one sentence per taken port, naming the port and the process.
    - A port held by a process whose name is in owners (the service itself, on a rerun) is not a conflict.
    - ss names a socket's process only when it may read that process's /proc/<pid>/fd (not, for
      example, root without CAP_SYS_PTRACE in a container). owned_ports lists the ports the running
      service is known to hold (from its last deployment); a listener on one of them is not a conflict.
  positional: _input, ports, owners, owned_ports
  options:
    _input: {description: The output of `ss -Hltnp`., type: str, required: true}
    ports: {description: The ports the service needs., type: list, elements: int, required: true}
    owners: {description: Process names that may hold the ports (the service's own)., type: list, elements: str, default: []}
    owned_ports: {description: Ports the running service holds already., type: list, elements: int, default: []}
"""

EXAMPLES = r"""
listen_port_conflicts: |
  conflicts: "{{ __ss.stdout | listen_port_conflicts([19530, 9091], ['milvus']) }}"
"""

RETURN = r"""
listen_port_conflicts:
  description: Sentences like "port 9091 is in use by nginx (pid 812)"; empty when every port is free or ours.
  type: list
  elements: str
"""

_LOCAL_PORT = re.compile(r":(\d+)$")
_PROCESS = re.compile(r'\("([^"]+)",pid=(\d+)')


def listen_port_conflicts(ss_output: str, ports: list, owners: list | None = None,
                          owned_ports: list | None = None) -> list[str]:
    if not isinstance(ss_output, str):
        raise AnsibleFilterError("listen_port_conflicts expects the text output of ss, got %s" % type(ss_output).__name__)
    try:
        wanted = {int(port) for port in ports} - {int(port) for port in owned_ports or []}
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("listen_port_conflicts: ports must be integers: %s" % exc) from None
    allowed = set(owners or [])
    conflicts: dict[int, set[str]] = {}
    for line in ss_output.splitlines():
        fields = line.split()
        # State Recv-Q Send-Q Local:Port Peer:Port [Process]
        if len(fields) < 5:
            continue
        match = _LOCAL_PORT.search(fields[3])
        if not match or int(match.group(1)) not in wanted:
            continue
        processes = _PROCESS.findall(" ".join(fields[5:]))
        names = {name for name, _ in processes}
        if names and names <= allowed:
            continue
        holder = ", ".join("%s (pid %s)" % proc for proc in processes) or "a process ss cannot name"
        conflicts.setdefault(int(match.group(1)), set()).add(holder)
    return ["port %d is in use by %s" % (port, "; ".join(sorted(holders)))
            for port, holders in sorted(conflicts.items())]


class FilterModule:
    def filters(self):
        return {"listen_port_conflicts": listen_port_conflicts}
