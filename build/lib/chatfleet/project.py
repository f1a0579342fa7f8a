"""Where the project is: the checkout (or an unpacked copy of it) whose playbooks, roles, plugins and
ansible.cfg the tool runs. The installed `chatfleet` command carries only the tool, so it looks, in
this order, at --project-dir, $CHATFLEET_ROOT, the current directory and its parents, and the
checkout the package itself sits in (a run from the checkout or an editable install)."""
from __future__ import annotations

import os
from pathlib import Path

# What makes a directory this project (each a path relative to it).
MARKERS = ("ansible.cfg", "site.yml", "playbooks/vars/fleet.yml", "roles")

_current: Path | None = None


class ProjectNotFound(Exception):
    """No project directory: the message says where the tool looked and what to do."""


def is_project(path: Path) -> bool:
    return all((path / marker).exists() for marker in MARKERS)


def find(explicit: str | None = None) -> Path:
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not is_project(path):
            raise ProjectNotFound(f"--project-dir {explicit} is not a chatfleet project (it needs {', '.join(MARKERS)})")
        return path
    if os.environ.get("CHATFLEET_ROOT"):
        path = Path(os.environ["CHATFLEET_ROOT"]).expanduser().resolve()
        if not is_project(path):
            raise ProjectNotFound(f"CHATFLEET_ROOT={path} is not a chatfleet project (it needs {', '.join(MARKERS)})")
        return path
    here = Path.cwd().resolve()
    for path in (here, *here.parents, Path(__file__).resolve().parents[1]):
        if is_project(path):
            return path
    raise ProjectNotFound(f"no chatfleet project in {here} or above it: run chatfleet inside the project's "
                          f"checkout, or pass --project-dir DIR or set CHATFLEET_ROOT")


def root() -> Path:
    """The project of this run (found once)."""
    global _current
    if _current is None:
        _current = find()
    return _current


def use(path: Path) -> None:
    global _current
    _current = path
