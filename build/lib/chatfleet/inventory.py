"""What a run targets, checked before anything runs: the inventory, the --limit, the batches, the vault.

Every check here fails with a `UsageError` whose text says what to do; the tool prints it and exits 2
before ansible-playbook is started, so no host is touched.
"""
from __future__ import annotations

import importlib.util
import os
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import project

VAULT_MARKERS = ("$ANSIBLE_VAULT;", "!vault")
_LIMIT_SPLIT = re.compile(r"[:,]")


class UsageError(Exception):
    """Bad input to the tool: nothing was run."""


def _load_filter(name: str):
    spec = importlib.util.spec_from_file_location(name, project.root() / "filter_plugins" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Fleet:
    """The inventory as the tool needs it: the groups and their hosts, in inventory order."""

    source: Path
    groups: dict[str, list[str]]

    @property
    def hosts(self) -> list[str]:
        return self.groups.get("all", [])

    def match(self, limit: str | None) -> list[str]:
        """The hosts a --limit selects, in inventory order (Ansible's pattern rules: `a:b` or `a,b` union,
        `&a` intersection, `!a` exclusion, shell wildcards). Fails on a term that names nothing."""
        if limit is None:
            return list(self.hosts)
        if not limit.strip():
            raise UsageError("--limit is empty: name a group (for example a100), a host or a pattern, "
                             "or leave --limit out to run on the whole inventory")
        selected: list[str] | None = None
        intersect: list[set[str]] = []
        exclude: set[str] = set()
        for term in (t.strip() for t in _LIMIT_SPLIT.split(limit)):
            if not term:
                continue
            kind, name = (term[0], term[1:]) if term[0] in "&!" else ("", term)
            hosts = self._term_hosts(name)
            if not hosts:
                known = ", ".join(sorted(g for g in self.groups if g not in ("all", "ungrouped")))
                raise UsageError(f"--limit {limit!r}: {name!r} is no group or host of {self.source} "
                                 f"(its groups: {known})")
            if kind == "&":
                intersect.append(set(hosts))
            elif kind == "!":
                exclude |= set(hosts)
            else:
                selected = (selected or []) + [h for h in hosts if h not in (selected or [])]
        chosen = set(selected if selected is not None else self.hosts)
        for group in intersect:
            chosen &= group
        chosen -= exclude
        result = [h for h in self.hosts if h in chosen]
        if not result:
            raise UsageError(f"--limit {limit!r} selects no host of {self.source}")
        return result

    def _term_hosts(self, name: str) -> list[str]:
        if name in self.groups:
            return self.groups[name]
        if name in self.hosts:
            return [name]
        if any(c in name for c in "*?["):
            groups = [g for g in self.groups if fnmatch.fnmatchcase(g, name)]
            hosts = {h for g in groups for h in self.groups[g]} | set(fnmatch.filter(self.hosts, name))
            return [h for h in self.hosts if h in hosts]
        return []


def load_fleet(inventory: str) -> Fleet:
    """Read the inventory with Ansible's own parser (no host is contacted)."""
    source = Path(inventory)
    if not source.exists():
        raise UsageError(f"inventory {inventory} does not exist (for example: -i inventories/prod)")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    manager = InventoryManager(loader=DataLoader(), sources=[str(source)])
    groups = {name: [h.name for h in group.get_hosts()] for name, group in manager.groups.items()}
    groups["all"] = [h.name for h in manager.groups["all"].get_hosts()]
    if not groups["all"]:
        raise UsageError(f"inventory {inventory} has no hosts")
    return Fleet(source, groups)


def batches(fleet: Fleet, targets: list[str], serial: Any, allow_all_at_once: bool) -> list[list[str]]:
    """The GPU nodes among the targets, in the batches site.yml's GPU play will run them."""
    gpu_nodes = [h for h in targets if h in fleet.groups.get("gpu_nodes", [])]
    rollout = _load_filter("rollout")
    try:
        sizes = rollout.rollout_batches(serial, len(gpu_nodes), allow_all_at_once)
    except Exception as error:  # AnsibleFilterError: the message names rollout_serial and the fix
        raise UsageError(str(error).replace("rollout_allow_all_at_once=true (chatfleet: --allow-all-at-once)",
                                            "--allow-all-at-once")) from None
    planned, start = [], 0
    for size in sizes:
        planned.append(gpu_nodes[start:start + size])
        start += size
    return planned


def vault_files(inventory: str) -> list[Path]:
    """Files of the inventory that hold vault-encrypted data (a whole file or a `!vault` value)."""
    source = Path(inventory)
    base = source if source.is_dir() else source.parent
    found = []
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix in ("", ".yml", ".yaml", ".json") and path.stat().st_size < 4 << 20:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if any(marker in text for marker in VAULT_MARKERS):
                found.append(path)
    return found


def check_vault(inventory: str, vault_password_file: str | None) -> str | None:
    """The vault password file to pass to ansible-playbook, or None when the inventory needs none."""
    password_file = vault_password_file or os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if password_file:
        if not Path(password_file).is_file():
            raise UsageError(f"vault password file {password_file} does not exist")
        return password_file
    encrypted = vault_files(inventory)
    if encrypted:
        raise UsageError(f"{encrypted[0]} is vault-encrypted and no vault password was given: pass "
                         f"--vault-password-file FILE (or set ANSIBLE_VAULT_PASSWORD_FILE)")
    return None
