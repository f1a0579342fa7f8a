"""fschat_patch_state over the real vllm_worker.py of every fschat wheel from 0.2.28 to 0.2.36 (tests/unit/conftest.py)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import AnsibleUnsafe

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("fschat_patch_filters", ROOT / "filter_plugins" / "fschat_patch.py")
fschat_patch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fschat_patch)
FILTERS = fschat_patch.FilterModule().filters()
state_of = FILTERS["fschat_patch_state"]

BUGGY = "stop=list(stop),"
FIXED = 'stop=[i for i in stop if i != ""],'
FIXED_SINCE = "0.2.35"  # the role's default
AFFECTED = ["0.2.28", "0.2.29", "0.2.30", "0.2.31", "0.2.32", "0.2.33", "0.2.34"]
FIXED_UPSTREAM = ["0.2.35", "0.2.36"]
# Where the buggy line is in each real wheel (../shared/FACTS.md): the patch goes by content, not by line.
BUGGY_LINE_NUMBER = {"0.2.28": 98, "0.2.29": 98, "0.2.30": 98, "0.2.31": 98, "0.2.32": 104, "0.2.33": 103,
                     "0.2.34": 103, "0.2.35": 105, "0.2.36": 111}


def test_the_wheels_are_the_whole_range(fschat_vllm_worker):
    assert sorted(fschat_vllm_worker, key=lambda v: tuple(map(int, v.split(".")))) == AFFECTED + FIXED_UPSTREAM
    for version, text in fschat_vllm_worker.items():
        # Every one of them, 0.2.35 and 0.2.36 included, holds the buggy line once, as a whole line.
        lines = text.splitlines()
        assert [n for n, line in enumerate(lines, 1) if BUGGY in line] == [BUGGY_LINE_NUMBER[version]], version
        assert lines[BUGGY_LINE_NUMBER[version] - 1] == " " * 12 + BUGGY, version


@pytest.mark.parametrize("version", AFFECTED)
def test_every_release_before_fixed_since_is_affected_and_patched_by_content(fschat_vllm_worker, version):
    text = fschat_vllm_worker[version]
    verdict = state_of(text, version, FIXED_SINCE)
    assert verdict["state"] == "affected", verdict["reason"]
    assert verdict["line"] == BUGGY_LINE_NUMBER[version]
    assert verdict["summary"].startswith("NOT patched")
    patched = verdict["patched_text"]
    assert "stop=list(stop)" not in patched
    assert re.search(r'^ {12}stop=\[i for i in stop if i != ""\],$', patched, re.MULTILINE)
    compile(patched, f"fschat-{version}/fastchat/serve/vllm_worker.py", "exec")
    # That one line changed, its indentation kept; everything else byte for byte.
    before, after = text.splitlines(keepends=True), patched.splitlines(keepends=True)
    assert len(before) == len(after)
    assert [(b, a) for b, a in zip(before, after) if b != a] == [(" " * 12 + BUGGY + "\n", " " * 12 + FIXED + "\n")]


@pytest.mark.parametrize("version", AFFECTED)
def test_the_patched_text_is_judged_patched(fschat_vllm_worker, version):
    patched = state_of(fschat_vllm_worker[version], version, FIXED_SINCE)["patched_text"]
    verdict = state_of(patched, version, FIXED_SINCE)
    assert verdict["state"] == "patched", verdict["reason"]
    assert verdict["summary"] == "patched" and verdict["line"] == BUGGY_LINE_NUMBER[version]
    assert "patched_text" not in verdict


@pytest.mark.parametrize("version", FIXED_UPSTREAM)
def test_fixed_upstream_releases_need_nothing_although_they_hold_the_text(fschat_vllm_worker, version):
    text = fschat_vllm_worker[version]
    assert BUGGY in text  # the text alone would call them unpatched
    verdict = state_of(text, version, FIXED_SINCE)
    assert verdict["state"] == "fixed_upstream"
    assert verdict["summary"] == "not needed (fixed upstream)"
    assert "NOT patched" not in verdict["summary"]
    assert "patched_text" not in verdict


@pytest.mark.parametrize("version", FIXED_UPSTREAM)
def test_the_upstream_fix_is_the_one_the_rule_relies_on(fschat_vllm_worker, version):
    # 0.2.35 stopped adding stop tokens that decode to "", the cause of the empty answers.
    assert 's = self.tokenizer.decode(tid)\n                if s != "":\n                    stop.add(s)' in fschat_vllm_worker[version]
    assert "stop.add(self.tokenizer.decode(tid))" in fschat_vllm_worker["0.2.34"]


@pytest.mark.parametrize("other_form", [
    "stop=list(stop),  # x",
    "stop=list(stop),# keep",
    "stop = list(stop),",
    "stop=list(stop)",
    "stop=list(stop), max_tokens=max_new_tokens,",
])
def test_the_buggy_call_in_another_form_is_unknown_and_not_patched(fschat_vllm_worker, other_form):
    text = fschat_vllm_worker["0.2.33"].replace(BUGGY, other_form)
    verdict = state_of(text, "0.2.33", FIXED_SINCE)
    assert verdict["state"] == "unknown"
    assert "patched_text" not in verdict
    assert verdict["line"] == 103
    assert f"another form on line 103 ('{other_form}')" in verdict["reason"]
    assert verdict["summary"] == "UNKNOWN to the patch: " + verdict["reason"]


def test_a_file_with_neither_line_is_unknown(fschat_vllm_worker):
    text = fschat_vllm_worker["0.2.33"].replace(BUGGY, "stop=sorted(stop),")
    verdict = state_of(text, "0.2.33", FIXED_SINCE)
    assert verdict["state"] == "unknown" and "patched_text" not in verdict
    assert "holds neither the buggy line 'stop=list(stop),' nor the fixed line" in verdict["reason"]


def test_the_buggy_line_twice_or_beside_the_fixed_line_is_unknown(fschat_vllm_worker):
    text = fschat_vllm_worker["0.2.33"]
    twice = text.replace(" " * 12 + BUGGY, " " * 12 + BUGGY + "\n" + " " * 12 + BUGGY)
    verdict = state_of(twice, "0.2.33", FIXED_SINCE)
    assert verdict["state"] == "unknown" and "2 times (lines 103, 104)" in verdict["reason"]
    both = text.replace(" " * 12 + BUGGY, " " * 12 + FIXED + "\n" + " " * 12 + BUGGY)
    verdict = state_of(both, "0.2.33", FIXED_SINCE)
    assert verdict["state"] == "unknown" and "both" in verdict["reason"] and "patched_text" not in verdict
    beside = text.replace("import json", "import json  # stop=list(stop)")
    verdict = state_of(beside, "0.2.33", FIXED_SINCE)
    assert verdict["state"] == "unknown" and "also in another form on line" in verdict["reason"]
    assert "patched_text" not in verdict


def test_trailing_blanks_and_crlf_are_the_whole_line_and_kept(fschat_vllm_worker):
    text = fschat_vllm_worker["0.2.33"].replace(BUGGY, BUGGY + " \t").replace("\n", "\r\n")
    verdict = state_of(text, "0.2.33", FIXED_SINCE)
    assert verdict["state"] == "affected"
    assert (" " * 12 + FIXED + " \t\r\n") in verdict["patched_text"]
    assert verdict["patched_text"].count("\r\n") == text.count("\r\n")
    assert state_of(verdict["patched_text"], "0.2.33", FIXED_SINCE)["state"] == "patched"


@pytest.mark.parametrize(("version", "fixed_since", "state"), [
    ("0.2.100", "0.2.35", "fixed_upstream"),  # as strings, "0.2.100" < "0.2.35"
    ("0.2.9", "0.2.35", "affected"),          # as strings, "0.2.9" > "0.2.35"
    ("0.2.36", "0.2.100", "affected"),
    ("0.3", "0.2.35", "fixed_upstream"),
    ("0.2.35", "0.2.35.0", "fixed_upstream"),
    ("0.2.33+local.build", "0.2.35", "affected"),
    ("0.2.35rc1", "0.2.35", "affected"),      # a pre-release comes before its release
])
def test_versions_are_compared_as_numbers(fschat_vllm_worker, version, fixed_since, state):
    assert state_of(fschat_vllm_worker["0.2.33"], version, fixed_since)["state"] == state


def test_fixed_since_decides_whatever_the_text(fschat_vllm_worker):
    # The molecule scenario stands the installed 0.2.33 in for a fixed release this way.
    assert state_of(fschat_vllm_worker["0.2.33"], "0.2.33", "0.2.33")["state"] == "fixed_upstream"
    assert state_of("anything", "0.2.36", FIXED_SINCE)["state"] == "fixed_upstream"
    assert state_of(None, "0.2.36", FIXED_SINCE)["state"] == "fixed_upstream"


def test_not_installed_missing_file_and_odd_versions():
    assert state_of(None, None, FIXED_SINCE)["state"] == "not_installed"
    assert state_of(None, None, FIXED_SINCE)["summary"] == "fschat not installed"
    missing = state_of(None, "0.2.33", FIXED_SINCE)
    assert missing["state"] == "unknown" and "missing" in missing["reason"]
    odd = state_of("            stop=list(stop),\n", "custom-build", FIXED_SINCE)
    assert odd["state"] == "unknown" and "'custom-build' is not a version number" in odd["reason"]


@pytest.mark.parametrize("fixed_since", ["", "latest", None])
def test_a_bad_fixed_since_is_refused_naming_the_variable(fixed_since):
    with pytest.raises(AnsibleFilterError, match="fschat_patch_fixed_since"):
        state_of("            stop=list(stop),\n", "0.2.33", fixed_since)


def test_the_patched_text_is_not_templated_again(fschat_vllm_worker):
    # Ansible must write the text as it is, even where it looks like Jinja.
    text = fschat_vllm_worker["0.2.33"].replace("import json", "import json  # {{ not_a_variable }}")
    assert isinstance(state_of(text, "0.2.33", FIXED_SINCE)["patched_text"], AnsibleUnsafe)


