"""python_env's conda provider against the conda this scenario installed (the TEST DOUBLE).

No conda and no Python 3.10 exist on the build and CI machines, so the conda provider of
roles/python_env is proven here: the double's `conda create` makes a venv with the node's
python3 (3.11) and refuses any other version, as conda offline with a mirror lacking it would.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from testlib import PYPI_INDEX_URL, ROOT, run_role

CONDA = "/opt/conda/bin/conda"
ENV = "/opt/chatchat/envs/conda-provider"

pytestmark = pytest.mark.skipif(not (Path(ROOT) / "roles" / "python_env" / "tasks" / "main.yml").is_file(),
                                reason="roles/python_env is not in this checkout")


def python_env_vars(**overrides) -> dict:
    settings = {
        "python_env_provider": "conda",
        "python_env_conda_executable": CONDA,
        "python_env_prefix": ENV,
        "python_env_python_version": "3.11",
        "python_env_index_url": PYPI_INDEX_URL,
        "python_env_requirement_files": [],
        "python_env_packages": ["requests"],
        "python_env_constraints": [],
        "python_env_import_checks": ["requests"],
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def clean_env(host):
    host.run(f"rm -rf {ENV}")
    yield
    host.run(f"rm -rf {ENV}")


def conda_calls(host) -> list[str]:
    return [line.split(" ", 1)[1] for line in host.file("/opt/conda/double.log").content_string.splitlines()
            if line.split(" ")[1:2] == ["conda"]]


def test_conda_provider_creates_and_fills_the_env(host, clean_env):
    result = run_role("python_env", extra_vars=python_env_vars())
    assert result.rc == 0, result
    assert f"conda create --yes --quiet --prefix {ENV} python=3.11 -> 0" in conda_calls(host)
    assert host.file(f"{ENV}/conda-meta/history").exists
    node_python = host.check_output("python3 -c 'import platform; print(platform.python_version())'")
    assert host.check_output(f"{ENV}/bin/python -c 'import platform; print(platform.python_version())'") == node_python
    # A real install from the lab mirror into the conda-made env.
    assert host.run(f"{ENV}/bin/python -c 'import requests'").rc == 0

    again = run_role("python_env", extra_vars=python_env_vars())
    assert again.rc == 0, again
    assert again.changed == 0, again


# No proof marker: conda's own refusal (its stderr) is what this shows, not a python_env setting check.
def test_conda_provider_with_a_python_conda_cannot_get_fails_and_creates_nothing(host, clean_env):
    result = run_role("python_env", extra_vars=python_env_vars(python_env_python_version="3.10.12"))
    assert result.rc != 0
    assert result.changed == 0, result
    assert "PackagesNotFoundError" in result.flat, result
    assert "python=3.10.12" in result.flat
    assert f"conda create --yes --quiet --prefix {ENV} python=3.10.12 -> 1" in conda_calls(host)
    assert not host.file(ENV).exists
