"""Unit tests for filter_plugins/python_env.py (python_env's install stamp) and the role's env probe."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_env_filters", ROOT / "filter_plugins" / "python_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load()
FILTERS = plugin.FilterModule().filters()
distributions = FILTERS["python_env_distributions"]
digest = FILTERS["python_env_install_digest"]

PROBE = {
    "files": {"/env/chatfleet-requirements.txt": "a" * 64, "/env/chatfleet-constraints.txt": "b" * 64,
              "/srv/release/requirements.txt": "c" * 64},
    "dists": ["pip-24.0.dist-info", "fschat-0.2.33.dist-info", "pymilvus-2.3.7.dist-info", "fastchat", "__pycache__"],
}


def _digest(**changes: object) -> str:
    probe = json.loads(json.dumps(PROBE))
    probe.update({k: v for k, v in changes.items() if k in probe})
    return digest(probe, str(changes.get("installer", "pip")), list(changes.get("import_checks", ["fastchat"])))


# --- python_env_distributions -------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("fschat-0.2.33.dist-info", "fschat==0.2.33"),
    ("SQLAlchemy-2.0.19.dist-info", "sqlalchemy==2.0.19"),
    ("typing_extensions-4.12.2.dist-info", "typing-extensions==4.12.2"),
    ("zope.interface-6.1.dist-info", "zope-interface==6.1"),
    ("torch-2.3.0+cpu.dist-info", "torch==2.3.0+cpu"),
    ("/opt/env/lib/python3.11/site-packages/uv-0.13.9.dist-info", "uv==0.13.9"),
    ("setuptools-80.9.0-py3.11.egg-info", "setuptools==80.9.0"),
    ("PyYAML-6.0.1.egg-info", "pyyaml==6.0.1"),
])
def test_distribution_of_metadata_directory(name: str, expected: str) -> None:
    assert distributions([name]) == [expected]


@pytest.mark.parametrize("name", ["fastchat", "__pycache__", "fschat.pth", "distutils-precedence.pth", "nodash.dist-info"])
def test_other_names_are_ignored(name: str) -> None:
    assert distributions([name]) == []


def test_distributions_sorted_and_unique() -> None:
    assert distributions(["pip-24.0.dist-info", "Fschat-0.2.33.dist-info", "fschat-0.2.33.dist-info"]) == [
        "fschat==0.2.33", "pip==24.0"]


@pytest.mark.parametrize("value", ["pip-24.0.dist-info", None, {"a": 1}])
def test_distributions_want_a_list(value: object) -> None:
    with pytest.raises(AnsibleFilterError, match="python_env_distributions"):
        distributions(value)


# --- python_env_install_digest ------------------------------------------------------------------------

def test_digest_is_stable_and_hex() -> None:
    assert _digest() == _digest()
    assert len(_digest()) == 64 and int(_digest(), 16) >= 0


def test_a_release_in_another_directory_with_the_same_requirements_gives_the_same_digest() -> None:
    moved = {path.replace("/srv/release/", "/srv/releases/v0.2.8.1/"): sha for path, sha in PROBE["files"].items()}
    assert _digest(files=moved) == _digest()
    assert _digest(files={**moved, "/srv/releases/v0.2.8.1/requirements.txt": "d" * 64}) != _digest()


def test_digest_ignores_order_and_non_metadata_entries() -> None:
    assert _digest(dists=list(reversed(PROBE["dists"]))) == _digest()
    assert _digest(dists=[d for d in PROBE["dists"] if "dist-info" in d]) == _digest()


@pytest.mark.parametrize("change", [
    {"files": {**PROBE["files"], "/env/chatfleet-requirements.txt": "d" * 64}},      # a pin changed
    {"files": {**PROBE["files"], "/env/chatfleet-constraints.txt": "d" * 64}},       # a constraint changed
    {"files": {**PROBE["files"], "/srv/release/requirements.txt": None}},            # a requirement file went
    {"files": {**PROBE["files"], "/srv/release/other.txt": "c" * 64}},               # another requirement file
    {"dists": PROBE["dists"] + ["uv-0.13.9.dist-info"]},                             # installed by hand
    {"dists": PROBE["dists"][1:]},                                                   # removed by hand
    {"dists": ["pip-24.1.dist-info"] + PROBE["dists"][1:]},                          # upgraded by hand
    {"installer": "uv"},
    {"import_checks": ["fastchat", "pymilvus"]},
])
def test_any_change_gives_another_digest(change: dict) -> None:
    assert _digest(**change) != _digest()


@pytest.mark.parametrize("probe", [None, {}, {"files": {}}, {"files": [], "dists": []}, {"files": {}, "dists": "x"}])
def test_digest_wants_the_probe(probe: object) -> None:
    with pytest.raises(AnsibleFilterError, match="python_env_install_digest"):
        digest(probe, "pip", [])


# --- The role's env probe (tasks/packages.yml), run with this interpreter ------------------------------

def _probe_script() -> str:
    tasks = yaml.safe_load((ROOT / "roles" / "python_env" / "tasks" / "packages.yml").read_text())
    return tasks[0]["vars"]["_python_env_stamp_probe"]


def test_probe_reads_files_dists_and_stamp(tmp_path: Path) -> None:
    pins = tmp_path / "chatfleet-requirements.txt"
    pins.write_text("fschat==0.2.33\n")
    stamp = tmp_path / "chatfleet-installed.json"
    stamp.write_text(json.dumps({"digest": "abc"}))
    out = subprocess.run([sys.executable, "-I", "-c", _probe_script(), str(stamp), str(pins), str(tmp_path / "missing.txt")],
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["files"] == {str(pins): hashlib.sha256(b"fschat==0.2.33\n").hexdigest(), str(tmp_path / "missing.txt"): None}
    assert result["stamp"] == {"digest": "abc"}
    assert "pytest" in " ".join(distributions(result["dists"]))
    assert len(digest(result, "pip", [])) == 64


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]"])
def test_probe_without_a_usable_stamp(tmp_path: Path, content: str | None) -> None:
    stamp = tmp_path / "chatfleet-installed.json"
    if content is not None:
        stamp.write_text(content)
    out = subprocess.run([sys.executable, "-I", "-c", _probe_script(), str(stamp)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["stamp"] is None


# --- Documentation --------------------------------------------------------------------------------


def test_undefined_input_fails_as_undefined() -> None:
    """A variable not set yet (as ansible-lint templates it) is undefined, not a bad value."""
    from jinja2 import Undefined
    from jinja2.exceptions import UndefinedError
    with pytest.raises(UndefinedError):
        digest(Undefined(), 'pip', [])


# --- python_env_settings_errors ------------------------------------------------------------------------

settings_errors = FILTERS["python_env_settings_errors"]
SETTINGS = {"python_version": "3.10.12", "name": "0.2.8", "prefix": "/opt/chatchat/envs/0.2.8",
            "index_url": "http://127.0.0.1:18080/repository/pypi-proxy/simple/",
            "packages": ["fschat==0.2.33", "pymilvus>=2.3.3,<2.4"], "constraints": ["setuptools<70"],
            "requirement_files": ["/srv/chatchat-release/requirements.txt"], "import_checks": ["fastchat", "a.b_c"],
            "installer": "pip", "uv_version": "0.13.9"}


def test_good_settings_pass() -> None:
    assert settings_errors(SETTINGS, "node1") == []


# The cases the molecule scenario ran one by one before, and more.
@pytest.mark.parametrize(("changes", "expected"), [
    ({"python_version": "3.x"}, "python_env_python_version must be a Python 3 version with two or three components"),
    ({"python_version": "2.7"}, "got '2.7'"),
    ({"python_version": "3"}, "got '3'"),
    ({"python_version": 3.10}, "python_env_python_version must be"),
    ({"name": "my env"}, "python_env_prefix must be an absolute path other than / (the env's directory"),
    ({"prefix": "/"}, "got prefix '/' and name '0.2.8'"),
    ({"prefix": "opt/env"}, "got prefix 'opt/env'"),
    ({"prefix": "/opt/envs/"}, "got prefix '/opt/envs/'"),
    ({"index_url": ""}, "python_env_index_url is required: the mirror's PyPI simple index"),
    ({"index_url": "ftp://mirror/simple/"}, "got 'ftp://mirror/simple/'"),
    ({"packages": ["fschat==0.2.33", "--extra-index-url=http://example.invalid/"]},
     "python_env_packages and python_env_constraints must be lists of requirement strings"),
    ({"constraints": ["-r other.txt"]}, "wrong: python_env_constraints ['-r other.txt']"),
    ({"packages": ["a\nb"]}, "wrong: python_env_packages"),
    ({"packages": "fschat==0.2.33"}, "wrong: python_env_packages fschat==0.2.33"),
    ({"requirement_files": ["requirements.txt"]}, "wrong: python_env_requirement_files ['requirements.txt']"),
    ({"import_checks": ["fast-chat"]}, "wrong: python_env_import_checks ['fast-chat']"),
    ({"import_checks": [1]}, "wrong: python_env_import_checks [1]"),
    ({"installer": "uv", "uv_version": "latest"}, "python_env_uv_version must be a uv release such as \"0.13.9\"; got 'latest'"),
])
def test_bad_setting_is_named_with_the_host(changes: dict, expected: str) -> None:
    errors = settings_errors({**SETTINGS, **changes}, "node1")
    assert len(errors) == 1, errors
    assert expected in errors[0] and errors[0].endswith("for host node1."), errors[0]


@pytest.mark.parametrize("changes", [{"python_version": "3.11"}, {"uv_version": "latest"},
                                     {"installer": "uv", "uv_version": "0.13.9.1"}, {"packages": [], "import_checks": []},
                                     {"index_url": "https://nexus.example.internal/repository/pypi-proxy/simple/"}])
def test_good_setting_passes(changes: dict) -> None:
    assert settings_errors({**SETTINGS, **changes}, "node1") == []


def test_index_url_credentials_never_shown() -> None:
    errors = settings_errors({**SETTINGS, "index_url": "ftp://user:s3cret@mirror/simple/"}, "node1")
    assert errors and "s3cret" not in errors[0] and "ftp://***@mirror/simple/" in errors[0]


def test_provider_choices_are_in_the_argument_spec() -> None:
    """python_env_provider "mamba" is refused by the argument spec (choices), before any task."""
    spec = yaml.safe_load((ROOT / "roles" / "python_env" / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["python_env_provider"]["choices"] == ["conda", "system"]


@pytest.mark.parametrize("settings", [None, {"python_version": "3.10"}])
def test_settings_must_be_complete(settings: object) -> None:
    with pytest.raises(AnsibleFilterError, match="python_env_settings_errors"):
        settings_errors(settings, "node1")
