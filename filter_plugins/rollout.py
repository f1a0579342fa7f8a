"""How a rollout splits the GPU nodes into batches (Ansible's `serial`), checked before any change.

site.yml's GPU play runs with `serial: "{{ rollout_serial }}"`; its preflight and the chatfleet tool
call `rollout_batches` to show the batches and to refuse a rollout whose first batch is the whole
fleet (no canary) unless the operator says so. The arithmetic is Ansible's own (a percentage of the
play's hosts, rounded down, at least 1; the last value repeats).
ansible-doc reads one documentation block per plugin file: DOCUMENTATION, EXAMPLES and RETURN are
YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
rollout_batches:
  name: rollout_batches
  short_description: The batch sizes a serial setting gives for a number of hosts
  description:
    - Validates a serial setting (an integer of at least 1, a percentage "N%" with N in 1-100, or a list of
      those) and returns the sizes of the batches Ansible will run, in order.
    - "With allow_all_at_once false, fails when the first batch holds every host of a fleet of two or more
      (for example serial 100% or a number at least the fleet size): such a rollout has no canary and takes
      every node down at once."
  positional: _input, host_count, allow_all_at_once
  options:
    _input: {description: "The serial setting: 1, '25%', or a list such as [1, '25%'].", type: raw, required: true}
    host_count: {description: The number of hosts the play runs on., type: int, required: true}
    allow_all_at_once: {description: Allow a first batch that holds every host., type: bool, default: false}
"""

EXAMPLES = r"""
rollout_batches: |
  batches: "{{ [1, '25%'] | rollout_batches(9) }}"   # [1, 2, 2, 2, 2]
"""

RETURN = r"""
rollout_batches:
  description: The batch sizes, in the order Ansible runs them; they add up to host_count.
  type: list
  elements: int
"""

_PERCENT = re.compile(r"^\s*(\d+)\s*%\s*$")


def _batch_size(value: Any, host_count: int) -> int:
    """One serial value as a number of hosts, as Ansible computes it (pct_to_int)."""
    if isinstance(value, bool):
        raise AnsibleFilterError(f"rollout_serial: {value!r} is not a batch size (an integer >= 1 or 'N%')")
    if isinstance(value, str) and _PERCENT.match(value):
        percent = int(_PERCENT.match(value).group(1))
        if not 1 <= percent <= 100:
            raise AnsibleFilterError(f"rollout_serial: {value!r} must be a percentage from 1% to 100%")
        return int(percent / 100.0 * host_count) or 1
    try:
        size = int(str(value).strip())
    except ValueError:
        raise AnsibleFilterError(f"rollout_serial: {value!r} is not a batch size (an integer >= 1 or 'N%')") from None
    if size < 1:
        raise AnsibleFilterError(f"rollout_serial: {value!r} must be at least 1 (0 would mean every host at once)")
    return size


def rollout_batches(serial: Any, host_count: int, allow_all_at_once: bool = False) -> list[int]:
    values = serial if isinstance(serial, list) else [serial]
    if not values:
        raise AnsibleFilterError("rollout_serial is an empty list: give at least one batch size, e.g. [1, '25%']")
    if isinstance(host_count, bool) or not isinstance(host_count, int) or host_count < 0:
        raise AnsibleFilterError(f"rollout_batches: host_count must be a number of hosts, got {host_count!r}")
    sizes = [_batch_size(value, host_count) for value in values]
    batches: list[int] = []
    left, index = host_count, 0
    while left > 0:
        batch = min(sizes[index], left)
        batches.append(batch)
        left -= batch
        index = min(index + 1, len(sizes) - 1)
    if host_count > 1 and batches == [host_count] and not allow_all_at_once:
        raise AnsibleFilterError(
            f"rollout_serial {serial!r} puts all {host_count} GPU nodes in one batch: every node would be down at "
            f"once, with no canary. Use a canary first (rollout_serial: [1, '25%']), or set rollout_allow_all_at_once=true "
            f"(chatfleet: --allow-all-at-once) if that is what you mean.")
    return batches


class FilterModule:
    """Rollout batch filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"rollout_batches": rollout_batches}
