"""Checks on a node where python_env (provider system, pip) converged with a Chatchat-like requirements.txt."""
from __future__ import annotations

import json

ENV = "/opt/chatchat/envs/0.2.8"
PYTHON = f"{ENV}/bin/python"
REQUIREMENTS = "/srv/chatchat-release/requirements.txt"

# Every requirement the env must satisfy, checked with the env's own `packaging`.
SATISFIED = """
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
result = {}
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            version = None
        result[line] = [version, version is not None and req.specifier.contains(version, prereleases=True)]
print(json.dumps(result))
"""


def installed(host, name: str) -> str:
    return host.check_output(f"{PYTHON} -c \"import importlib.metadata as m; print(m.version('{name}'))\"")


def test_env_is_a_venv_of_the_requested_python(host):
    version = host.check_output(f"{PYTHON} -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'")
    assert version.split(".")[:2] == ["3", "11"]
    assert host.check_output(f"{PYTHON} -c 'import sys; print(sys.prefix)'") == ENV
    cfg = host.file(f"{ENV}/pyvenv.cfg")
    assert cfg.is_file and "home = /usr/bin" in cfg.content_string
    assert host.package("python3-venv").is_installed


def test_project_files_hold_the_pins_and_constraints(host):
    pins = host.file(f"{ENV}/chatfleet-requirements.txt").content_string.splitlines()
    constraints = host.file(f"{ENV}/chatfleet-constraints.txt").content_string.splitlines()
    assert [line for line in pins if not line.startswith("#")] == ["fschat==0.2.33", "pymilvus>=2.3.3,<2.4"]
    assert [line for line in constraints if not line.startswith("#")] == [
        "fschat==0.2.33", "pymilvus>=2.3.3,<2.4", "setuptools>=77.0.3,<81", "marshmallow<3.20", "httpx<0.28",
        "pyarrow<26"]


def test_pins_and_constraints_are_honoured(host):
    # fschat 0.2.33 although requirements.txt says fschat>=0.2.33; pymilvus 2.3.x although it
    # says nothing about pymilvus; the scenario's setuptools range (the lab's) and marshmallow<3.20
    # for pymilvus 2.3.
    assert installed(host, "fschat") == "0.2.33"
    assert installed(host, "pymilvus").startswith("2.3.")
    setuptools = [int(p) for p in installed(host, "setuptools").split(".")[:2]]
    marshmallow = [int(p) for p in installed(host, "marshmallow").split(".")[:2]]
    assert 77 <= setuptools[0] < 81, setuptools
    assert marshmallow < [3, 20], marshmallow


def test_every_requirement_line_is_satisfied(host):
    files = f"{ENV}/chatfleet-constraints.txt {ENV}/chatfleet-requirements.txt {REQUIREMENTS}"
    result = json.loads(host.check_output(f"{PYTHON} -c '{SATISFIED}' {files}"))
    assert "langchain==0.0.344" in result and "pydantic==1.10.13" in result
    unsatisfied = {line: version for line, (version, ok) in result.items() if not ok}
    assert unsatisfied == {}


def test_the_stack_imports(host):
    out = host.check_output(f"{PYTHON} -c 'import pymilvus, langchain, fastchat, pydantic; print(pydantic.VERSION)'")
    assert out.startswith("1.10.")


def test_pip_check_is_clean(host):
    result = host.run(f"{PYTHON} -m pip check")
    assert result.rc == 0, result.stdout + result.stderr


def test_freeze_record_matches_the_env(host):
    record = host.file(f"{ENV}/chatfleet-freeze.txt").content_string.splitlines()
    freeze = host.check_output(f"{PYTHON} -m pip freeze --all").splitlines()
    assert [line for line in record if not line.startswith("#")] == freeze
    assert "fschat==0.2.33" in freeze
