"""Every role's meta/argument_specs.yml documents exactly the variables in defaults/main.yml."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
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


@pytest.mark.parametrize("role", ROLES)
def test_readme_documents_every_variable(role: str) -> None:
    readme = (ROLES_DIR / role / "README.md").read_text()
    defaults = _load(ROLES_DIR / role / "defaults" / "main.yml")
    missing = [name for name in defaults if f"`{name}`" not in readme]
    assert missing == [], f"README.md of {role} does not document {missing}"
