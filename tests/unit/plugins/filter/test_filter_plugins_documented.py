"""Every filter plugin documents each of its filters (DOCUMENTATION, EXAMPLES, RETURN: YAML keyed by
the filter's name, as ansible-doc reads them) and types every argument and its result."""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

PLUGINS_DIR = Path(__file__).resolve().parents[4] / "filter_plugins"
PLUGINS = sorted(path.stem for path in PLUGINS_DIR.glob("*.py"))


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(PLUGINS_DIR))  # some plugins import a sibling
    spec = importlib.util.spec_from_file_location(f"filter_plugin_{name}", PLUGINS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugins_are_found():
    assert {"nvidia_smi", "rollout", "models_manifest", "python_env"} <= set(PLUGINS)


@pytest.mark.parametrize("name", PLUGINS)
def test_each_filter_is_documented_and_typed(name: str) -> None:
    module = load(name)
    filters = module.FilterModule().filters()
    docs = {block: yaml.safe_load(getattr(module, block)) for block in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    for block, parsed in docs.items():
        assert isinstance(parsed, dict) and set(parsed) == set(filters), (block, sorted(filters))
    for filter_name, func in filters.items():
        doc = docs["DOCUMENTATION"][filter_name]
        assert doc["name"] == filter_name and doc["short_description"], filter_name
        assert "_input" in doc["options"], filter_name
        assert f"| {filter_name}" in docs["EXAMPLES"][filter_name], filter_name
        returned = docs["RETURN"][filter_name]
        assert (returned.get("_value") or returned)["type"], filter_name
        hints = inspect.get_annotations(func)
        assert "return" in hints and len(hints) == len(inspect.signature(func).parameters) + 1, filter_name
