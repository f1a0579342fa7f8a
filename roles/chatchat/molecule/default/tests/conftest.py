"""Fixtures of the chatchat scenario."""
from __future__ import annotations

import pytest
from scenario import lab_vars, mirror_sha256, release_dir


@pytest.fixture(scope="session")
def converged_release() -> str:
    """The release converge deployed: the lab inventory's sha256, which must be the mirror's."""
    sha = lab_vars()["chatchat_source_sha256"]
    assert sha == mirror_sha256(), "inventories/lab/group_vars/gpu_nodes/chatchat.yml has a stale sha256"
    return release_dir("0.2.8", sha)

