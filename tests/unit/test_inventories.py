"""The example inventories' wiring, as Ansible templates it for a host (no host is contacted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
L40_NODE = "l40-node-01.example.internal"


def host_vars(inventory: str, host: str, expression: str, *extra: str) -> object:
    """The value of a Jinja expression for one host of an inventory (the debug action runs on the controller)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    # The playbooks' wiring (a play's vars_files), here as extra vars: the inventory's values feed it.
    run = subprocess.run([str(Path(sys.executable).parent / "ansible"), host, "-i", str(ROOT / "inventories" / inventory), "-m", "ansible.builtin.debug",
                          "-a", "msg={{ " + expression + " }}", "-e", "@" + str(ROOT / "playbooks" / "vars" / "wiring.yml"), *extra],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"][host]["msg"]


@pytest.mark.parametrize(("extra", "needed"), [
    ((), False),
    (("-e", "chatchat_text_splitter_name=SpacyTextSplitter"), True),
    (("-e", "chatchat_text_splitter_name=SpacyTextSplitter", "-e", "chatchat_spacy_tokenizer_path=/srv/tok"), False),
])
def test_the_spacy_splitters_tokenizer_is_a_placed_model(extra, needed):
    # kb_config.py points the SpacyTextSplitter at <models_root_path>/gpt2 unless a path is given:
    # the prod manifest must then enable gpt2 and the models role must require it.
    found = host_vars("prod", L40_NODE,
                      "{'required': models_required, 'enabled': models_manifest | selectattr('name', 'equalto', 'gpt2')"
                      " | map(attribute='enabled') | list}", *extra)
    assert found == {"required": ["chatglm3-6b-32k", "bge-base-zh-v1.5"] + (["gpt2"] if needed else []),
                     "enabled": [needed]}


def _inventory_files(inventory: str) -> dict[str, bytes]:
    base = ROOT / "inventories" / inventory
    return {str(path.relative_to(base)): path.read_bytes() for path in base.rglob("*.yml")}


def test_lab_and_prod_share_no_identical_file():
    lab, prod = _inventory_files("lab"), _inventory_files("prod")
    assert [name for name in lab if prod.get(name) == lab[name]] == []


def _keys(node: object) -> set[str]:
    """Every mapping key in a YAML document (variables at any level of hosts.yml included)."""
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys(value)}
    if isinstance(node, list):
        return {key for value in node for key in _keys(value)}
    return set()


@pytest.mark.parametrize("inventory", ["lab", "prod"])
def test_an_inventory_sets_no_variable_that_the_playbooks_wire(inventory):
    # The playbooks' vars_files would override them: an inventory that set one would be ignored.
    wired = set(yaml.safe_load((ROOT / "playbooks" / "vars" / "wiring.yml").read_text()))
    found = {name: sorted(_keys(yaml.safe_load(data)) & wired) for name, data in _inventory_files(inventory).items()}
    assert {name: keys for name, keys in found.items() if keys} == {}
