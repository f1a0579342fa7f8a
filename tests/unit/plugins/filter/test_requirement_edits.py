"""Unit tests for filter_plugins/requirement_edits.py: a release's requirement files edited per site
(python_env_requirement_edits), each rule case by case, and the CPU lab's edit read against lines
written as Chatchat v0.2.8's requirements.txt writes them."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("requirement_edits", ROOT / "filter_plugins" / "requirement_edits.py")
plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plugin)
FILTERS = plugin.FilterModule().filters()
errors_of, edited = FILTERS["requirement_edit_errors"], FILTERS["requirements_edited"]

# Lines in the forms upstream's requirement files use: comments after a requirement, extras,
# environment markers, a commented-out requirement, a pip option.
REQUIREMENTS = """# API requirements

langchain==0.0.344
xformers>=0.0.22.post7
torch==2.1.0  ##on Windows system, install the cuda version manually
torchvision  #on Windows system
unstructured[all-docs]==0.11.0
python-magic-bin; sys_platform == 'win32'
vllm==0.2.2; sys_platform == "linux"
# pymilvus>=2.3.3
--prefer-binary
"""
WEBUI = "streamlit>=1.29.0\nhttpx[brotli,http2,socks]>=0.25.2\n"
FILES = {"/opt/chatchat/releases/r/requirements.txt": REQUIREMENTS,
         "/opt/chatchat/releases/r/requirements_webui.txt": WEBUI}
CPU_LAB = {
    "drop": ["vllm", "xformers", "torchvision"],
    "replace": {"torch": "torch==2.13.0", "unstructured": "unstructured[csv,md]==0.11.0"},
    "add": ["pymilvus>=2.3.3,<2.4", "python-multipart"],
}


def requirements(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_cpu_lab_edit_fits_the_files_and_gives_the_edited_set():
    assert errors_of(FILES, CPU_LAB, "lab-a100-1") == []
    result = edited(FILES, CPU_LAB)
    assert requirements(result) == [
        "langchain==0.0.344", "torch==2.13.0", "unstructured[csv,md]==0.11.0",
        "python-magic-bin; sys_platform == 'win32'", "--prefer-binary",
        "streamlit>=1.29.0", "httpx[brotli,http2,socks]>=0.25.2",
        "pymilvus>=2.3.3,<2.4", "python-multipart"]
    # What changed stays readable in the file: each file named, each upstream line it dropped or replaced.
    assert "# --- requirements_webui.txt" in result
    # Named, not placed: the same files in another release's directory give the same file (no change).
    moved = {path.replace("/releases/r/", "/releases/r2/"): text for path, text in FILES.items()}
    assert edited(moved, CPU_LAB) == result
    assert '# dropped: vllm==0.2.2; sys_platform == "linux"' in result
    assert "# replaced: torch==2.1.0  ##on Windows system, install the cuda version manually" in result


def test_no_edits_keep_every_line():
    assert requirements(edited(FILES, {})) == requirements(REQUIREMENTS) + requirements(WEBUI)


def test_names_compare_as_pep_503_normalises_them():
    edits = {"drop": ["Python_Magic.Bin"], "replace": {"LangChain": "langchain==0.0.350"}}
    assert errors_of(FILES, edits, "h") == []
    assert requirements(edited(FILES, edits))[:2] == ["langchain==0.0.350", "xformers>=0.0.22.post7"]


@pytest.mark.parametrize("edits, expected", [
    ({"drop": ["flash-attn"]}, "python_env_requirement_edits names flash-attn, which none of the requirement files"),
    ({"replace": {"pymilvus": "pymilvus==2.3.4"}}, "names pymilvus, which none"),  # commented out upstream
    ({"add": ["torch==2.13.0"]}, "adds torch==2.13.0, which the requirement files"),
    ({"replace": {"torch": "torchvision==0.1"}}, "a replacement must name the requirement it replaces; wrong: torch: torchvision==0.1"),
    ({"drop": ["torch"], "replace": {"torch": "torch==2"}}, "both drops and replaces torch"),
    ({"add": ["--index-url http://elsewhere/"]}, "no pip options"),
    ({"drop": ["torch>=2"]}, "requirement names in drop and replace"),
])
def test_a_broken_edit_names_the_variable_the_requirement_and_the_host(edits, expected):
    errors = errors_of(FILES, edits, "lab-l40-1")
    assert len(errors) == 1 and expected in errors[0] and "lab-l40-1" in errors[0], errors
    with pytest.raises(AnsibleFilterError, match=re.escape(expected)):
        edited(FILES, edits)


def test_a_missing_name_lists_the_files_it_was_looked_for_in():
    (error,) = errors_of(FILES, {"drop": ["flash-attn"]}, "h")
    assert "/opt/chatchat/releases/r/requirements.txt, /opt/chatchat/releases/r/requirements_webui.txt" in error


@pytest.mark.parametrize("edits", [
    {"remove": ["vllm"]},
    {"drop": "vllm"},
    {"replace": ["torch==2.13.0"]},
    {"add": [1]},
    None,
])
def test_edits_of_the_wrong_shape_are_refused(edits):
    with pytest.raises(AnsibleFilterError, match="python_env_requirement_edits"):
        errors_of(FILES, edits, "h")


def test_files_of_the_wrong_shape_are_refused():
    with pytest.raises(AnsibleFilterError, match="mapping of requirement file path to content"):
        errors_of(["/opt/r.txt"], {}, "h")
