"""Every role's meta/argument_specs.yml documents exactly the variables in defaults/main.yml, and its
README shows them as the spec describes them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = ROOT / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").exists())


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role: str) -> None:
    defaults = _load(ROLES_DIR / role / "defaults" / "main.yml")
    specs = _load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]
    documented = set(specs["main"]["options"])
    assert set(defaults) - documented == set(), "defaults missing from argument_specs"
    required = {k for k, v in specs["main"]["options"].items() if v.get("required")}
    assert documented - set(defaults) - required == set(), "argument_specs options without a default"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_are_prefixed_and_described(role: str) -> None:
    specs = _load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry_point, spec in specs.items():
        for name, option in spec.get("options", {}).items():
            assert name.startswith(f"{role}_"), f"{entry_point}: {name} lacks the {role}_ prefix"
            assert option.get("description"), f"{entry_point}: {name} has no description"
            assert option.get("type"), f"{entry_point}: {name} has no type"


def test_every_readme_has_the_tables_its_spec_makes() -> None:
    """The README's variables tables are generated from meta/argument_specs.yml (tools/role_readme.py):
    a spec changed without `make docs` fails here, naming the README."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "role_readme.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
