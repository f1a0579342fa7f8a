"""The example inventories' wiring, as Ansible templates it for a host (no host is contacted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
L40_NODE = "l40-node-01.example.internal"


def host_vars(inventory: str, host: str, expression: str, *extra: str) -> object:
    """The value of a Jinja expression for one host of an inventory (the debug action runs on the controller)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    run = subprocess.run([str(Path(sys.executable).parent / "ansible"), host, "-i", str(ROOT / "inventories" / inventory), "-m", "ansible.builtin.debug",
                          "-a", "msg={{ " + expression + " }}", *extra],
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
