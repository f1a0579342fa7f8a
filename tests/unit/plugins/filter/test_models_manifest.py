"""Unit tests for filter_plugins/models_manifest.py (the models role's manifest checks)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("models_manifest", ROOT / "filter_plugins" / "models_manifest.py")
models_manifest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models_manifest)
FILTERS = models_manifest.FilterModule().filters()
errors = FILTERS["models_manifest_errors"]
plan = FILTERS["models_plan"]

MIRROR = "https://nexus.example.internal/repository/models/"
SHA = "6558647b650ecf9d582195bb9a0a4edacce5da55"


def entry(**overrides):
    base = {"name": "chatglm3-6b-32k", "repo": "THUDM/chatglm3-6b-32k", "revision": SHA, "kind": "llm", "size": "12.5G"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_good_manifest_has_no_errors():
    assert errors([entry(), entry(name="bge", repo="BAAI/bge-base-zh-v1.5", kind="embedding", size=409_000_000)],
                  MIRROR) == []


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"revision": ""}, 'revision "" must be the full 40-hex commit'),
    ({"revision": "v0.2.8"}, 'revision "v0.2.8" must be the full 40-hex commit'),
    ({"revision": SHA.upper()}, "must be the full 40-hex commit"),
    ({"kind": "chat"}, 'kind "chat" must be one of llm, embedding, tokenizer'),
    ({"size": "0"}, 'size "0" must be a positive size'),
    ({"size": "lots"}, 'size "lots" must be a positive size'),
    ({"size": True}, "size true must be a positive size"),
    ({"size": None}, "size null must be a positive size"),
    ({"name": "a/b"}, 'name "a/b" must match'),
    ({"name": ".hidden"}, 'name ".hidden" must match'),
    ({"repo": "../etc"}, 'repo "../etc" must be a path on the mirror'),
    ({"repo": None}, "repo null must be a path on the mirror"),
    ({"url": "ftp://x/y"}, 'url "ftp://x/y" is not an http(s):// or file:// URL'),
    ({"enabled": "no"}, 'enabled must be true or false, not "no"'),
    ({"sha": "x"}, "unknown field(s) sha"),
])
def test_each_problem_is_named_with_its_entry_and_field(overrides, fragment):
    found = errors([entry(**overrides)], MIRROR)
    assert len(found) == 1, found
    assert fragment in found[0]


def test_a_disabled_entry_may_wait_for_its_pin_but_not_carry_a_bad_one():
    assert errors([entry(revision="", enabled=False)], MIRROR) == []
    assert "must be the full 40-hex commit" in errors([entry(revision="main", enabled=False)], MIRROR)[0]
    assert "must be the full 40-hex commit" in errors([entry(revision="", enabled=True)], MIRROR)[0]


def test_duplicate_names_and_bad_shapes_are_reported():
    assert any("appears twice" in e for e in errors([entry(), entry()], MIRROR))
    assert errors("chatglm3", MIRROR) == ["models_manifest must be a list of models, not str"]
    assert "models_manifest[0] must be a mapping" in errors(["chatglm3"], MIRROR)[0]


def test_a_mirror_url_is_required_unless_each_entry_has_its_own():
    assert "models_mirror_url is empty" in errors([entry()], "")[0]
    assert errors([entry(url="http://git.example.internal/m.git")], "") == []
    assert errors([entry(enabled=False)], "") == []
    assert 'models_mirror_url "nexus" is not an http(s)' in errors([entry()], "nexus")[0]


def test_plan_resolves_urls_sizes_and_drops_disabled_entries():
    manifest = [entry(), entry(name="m3e-base", repo="moka-ai/m3e-base", kind="embedding", size="820M", enabled=False),
                entry(name="own", url="file:///srv/models/own.git", size=1234)]
    assert plan(manifest, MIRROR) == [
        {"name": "chatglm3-6b-32k", "url": "https://nexus.example.internal/repository/models/THUDM/chatglm3-6b-32k.git",
         "revision": SHA, "kind": "llm", "size": 13421772800},
        {"name": "own", "url": "file:///srv/models/own.git", "revision": SHA, "kind": "llm", "size": 1234},
    ]
    assert plan([entry()], "https://hf-mirror.example.internal", "")[0]["url"] == \
        "https://hf-mirror.example.internal/THUDM/chatglm3-6b-32k"


def test_plan_refuses_a_bad_manifest():
    with pytest.raises(AnsibleFilterError, match="revision \"main\""):
        plan([entry(revision="main")], MIRROR)
