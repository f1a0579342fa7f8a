"""Run the conda role again through ansible-playbook against the molecule node with other inputs.

The node holds the installer TEST DOUBLE's conda 23.11.0 in /opt/conda (converge). Other prefixes
are made and removed here; /opt/conda is left as converge made it.
"""
from __future__ import annotations

import shlex
import urllib.request

import pytest
from faultproxy import FaultProxy
from testlib import MIRROR_URL, RAW_URL, run_role

NODE = "conda-node"
PREFIX = "/opt/conda"
DOWNLOADS = "/var/cache/chatfleet/conda"
INSTALLERS = f"{RAW_URL}fixtures/conda/"
NEW, OLD = "23.11.0", "23.10.0"


def installer(version: str) -> dict:
    """conda_* settings for one installer double on the lab mirror (SHA-256 from its .sha256)."""
    name = f"Miniconda3-double-{version}-Linux-x86_64.sh"
    with urllib.request.urlopen(f"{INSTALLERS}{name}.sha256", timeout=30) as resp:
        sha256 = resp.read().decode().split()[0]
    return {"conda_installer_url": f"{INSTALLERS}{name}", "conda_installer_sha256": sha256, "conda_version": version}


def log_lines(host, prefix: str, kind: str) -> list[str]:
    log = host.file(f"{prefix}/double.log")
    if not log.exists:
        return []
    return [line.split(" ", 1)[1] for line in log.content_string.splitlines() if line.split(" ")[1:2] == [kind]]


def snapshot(host, path: str) -> str:
    """Every path under `path` and the checksum of every file (the double's own log aside)."""
    return host.check_output(
        f"cd {path} && find . | sort && find . -type f ! -name double.log -print0 | sort -z | xargs -0 -r sha256sum")


def conda_version(host, prefix: str) -> str:
    return host.check_output(f"{prefix}/bin/conda --version")


@pytest.fixture
def scratch(host):
    """Paths for one test (a prefix and a download dir), removed afterwards."""
    paths = {"conda_prefix": "/opt/conda-test", "conda_download_dir": "/var/cache/chatfleet/conda-test",
             "conda_profile_script": ""}  # the node's login-shell hook stays on /opt/conda
    host.run(f"rm -rf {paths['conda_prefix']} {paths['conda_download_dir']}")
    yield paths
    host.run(f"rm -rf {paths['conda_prefix']} {paths['conda_download_dir']} /opt/conda-test.env")


@pytest.fixture(scope="module")
def old_prefix(host):
    """A prefix holding the older conda (23.10.0) with one environment created by it, shared by the
    tests below in file order: those that must leave it as it is first, the update (fault) last."""
    paths = {"conda_prefix": "/opt/conda-old", "conda_download_dir": "/var/cache/chatfleet/conda-old",
             "conda_profile_script": ""}
    host.run(f"rm -rf {paths['conda_prefix']} {paths['conda_download_dir']}")
    result = run_role("conda", extra_vars={**paths, **installer(OLD)})
    assert result.rc == 0, result
    env = f"{paths['conda_prefix']}/envs/keep"
    host.check_output(f"{paths['conda_prefix']}/bin/conda create --yes --quiet --prefix {env} python=3")
    yield {**paths, "env": env}
    host.run(f"rm -rf {paths['conda_prefix']} {paths['conda_download_dir']}")


# ----------------------------------------------------------------------------- reruns

@pytest.mark.idempotence
def test_rerun_downloads_nothing_and_changes_nothing(host):
    # With the cached installer gone and a URL where nothing listens, a run must still succeed
    # without a change: the installed version is checked first and nothing is fetched.
    cached = f"{DOWNLOADS}/Miniconda3-double-{NEW}-Linux-x86_64.sh"
    host.check_output(f"mv {cached} {cached}.aside")
    try:
        result = run_role("conda", extra_vars={
            "conda_installer_url": f"http://127.0.0.1:9/nowhere/Miniconda3-double-{NEW}-Linux-x86_64.sh"})
        assert result.rc == 0, result
        assert result.changed == 0, result
        assert not host.file(cached).exists
    finally:
        host.run(f"mv {cached}.aside {cached}")
    assert log_lines(host, PREFIX, "installer") == [f"installer Miniconda3-double-{NEW} -b -p {PREFIX} -> 0"]


@pytest.mark.check_mode
def test_check_mode_on_the_converged_host_changes_nothing(host):
    before = snapshot(host, PREFIX)
    result = run_role("conda", "--check")
    assert result.rc == 0, result
    assert result.changed == 0, result
    assert snapshot(host, PREFIX) == before


@pytest.mark.check_mode
def test_check_mode_on_a_fresh_prefix_changes_nothing(host, scratch):
    result = run_role("conda", "--check", extra_vars=scratch)
    assert result.rc == 0, result
    assert result.changed > 0, result  # it reports what a real run would do
    assert "would be installed into /opt/conda-test" in result.flat, result
    assert not host.file(scratch["conda_prefix"]).exists
    assert not host.file(scratch["conda_download_dir"]).exists


def test_empty_prefix_directory_is_installed_into(host, scratch):
    # e.g. a mount point: the installer needs -u to accept an existing path.
    host.check_output(f"mkdir -p {scratch['conda_prefix']}")
    result = run_role("conda", extra_vars=scratch)
    assert result.rc == 0, result
    assert conda_version(host, scratch["conda_prefix"]) == f"conda {NEW}"
    assert log_lines(host, scratch["conda_prefix"], "installer") == [
        f"installer Miniconda3-double-{NEW} -b -u -p {scratch['conda_prefix']} -> 0"]


# ----------------------------------------------------------------------------- versions

@pytest.mark.check_mode
def test_check_mode_on_an_older_installation_changes_nothing(host, old_prefix):
    before = snapshot(host, old_prefix["conda_prefix"])
    result = run_role("conda", "--check", extra_vars={**old_prefix, **installer(NEW)})
    assert result.rc == 0, result
    assert f"would be updated (from {OLD}) in {old_prefix['conda_prefix']}" in result.flat, result
    assert snapshot(host, old_prefix["conda_prefix"]) == before
    assert conda_version(host, old_prefix["conda_prefix"]) == f"conda {OLD}"


def test_update_is_refused_when_disabled(host, old_prefix):
    before = snapshot(host, old_prefix["conda_prefix"])
    result = run_role("conda", extra_vars={**old_prefix, **installer(NEW), "conda_update_existing": False})
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert f"holds conda {OLD}, not conda_version {NEW}, and conda_update_existing is false" in message, message
    assert result.changed == 0
    assert snapshot(host, old_prefix["conda_prefix"]) == before


@pytest.mark.fault
def test_download_cut_mid_way_leaves_the_older_installation_and_the_next_run_updates_it(host, old_prefix):
    """The mirror drops the connection 4 KiB into the new installer (faultproxy; the pin is right):
    the update stops before the installer runs, the old conda and its env are untouched; the next
    run (mirror back) updates in place, keeping the env, and the one after changes nothing."""
    prefix, new = old_prefix["conda_prefix"], installer(NEW)
    before, env_before = snapshot(host, prefix), snapshot(host, old_prefix["env"])
    installs = log_lines(host, prefix, "installer")
    with FaultProxy(MIRROR_URL, break_files=f"/Miniconda3-double-{NEW}-", keep_bytes=4096) as proxy:
        result = run_role("conda", extra_vars={
            **old_prefix, **new, "conda_download_retries": 0,
            "conda_installer_url": new["conda_installer_url"].replace(MIRROR_URL, proxy.url)})
    assert proxy.broken, f"the fault was not injected: {proxy.passed}"
    assert result.rc != 0, result
    message = result.failure(NODE)["msg"]
    # Cut short, the file either fails the transfer or its checksum (the pin is right): both stop here.
    assert (f"Could not download conda_installer_url {proxy.url}" in message
            or f"conda_installer_url {proxy.url}" in message and "does not match conda_installer_sha256" in message), message
    assert f"on host {NODE}" in message, message
    assert f"Nothing was unpacked and {prefix} is unchanged" in message, message
    assert snapshot(host, prefix) == before
    assert log_lines(host, prefix, "installer") == installs  # the installer never ran
    assert conda_version(host, prefix) == f"conda {OLD}"
    assert host.check_output(f"ls -A {old_prefix['conda_download_dir']}") == f"Miniconda3-double-{OLD}-Linux-x86_64.sh"

    recovered = run_role("conda", extra_vars={**old_prefix, **new})
    assert recovered.rc == 0, recovered
    assert recovered.changed > 0
    assert conda_version(host, prefix) == f"conda {NEW}"
    assert log_lines(host, prefix, "installer")[-1] == f"installer Miniconda3-double-{NEW} -b -u -p {prefix} -> 0"
    assert snapshot(host, old_prefix["env"]) == env_before  # the environment survived the update
    again = run_role("conda", extra_vars={**old_prefix, **new})
    assert again.rc == 0, again
    assert again.changed == 0, again


def test_newer_installation_is_not_downgraded(host):
    before = snapshot(host, PREFIX)
    result = run_role("conda", extra_vars=installer(OLD))
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert f"holds conda {NEW}, newer than conda_version {OLD}; the role never downgrades" in message, message
    assert result.changed == 0
    assert snapshot(host, PREFIX) == before


@pytest.mark.bad_input
def test_prefix_with_other_content_is_refused(host, scratch):
    host.check_output(f"mkdir -p {scratch['conda_prefix']}/data && echo keep > {scratch['conda_prefix']}/data/file")
    before = snapshot(host, scratch["conda_prefix"])
    result = run_role("conda", extra_vars=scratch)
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert "exists but holds no working conda" in message, message
    assert "conda_prefix" in message and NODE in message, message
    assert result.changed == 0
    assert snapshot(host, scratch["conda_prefix"]) == before
    assert not host.file(scratch["conda_download_dir"]).exists


# ----------------------------------------------------------------------------- .condarc

def test_missing_condarc_fails_before_the_download(host, scratch):
    host.check_output("mv /etc/conda/.condarc /etc/conda/.condarc.aside")
    try:
        result = run_role("conda", extra_vars=scratch)
    finally:
        host.check_output("mv /etc/conda/.condarc.aside /etc/conda/.condarc")
    assert result.rc != 0
    assert "/etc/conda/.condarc (conda_condarc_path) does not exist" in result.failure(NODE)["msg"], result
    assert result.changed == 0
    assert not host.file(scratch["conda_prefix"]).exists
    assert not host.file(scratch["conda_download_dir"]).exists


@pytest.mark.parametrize(("path", "content", "expected"), [
    # Miniforge-style <prefix>/.condarc bringing back the public default channels.
    (f"{PREFIX}/.condarc", "channels:\n  - defaults\n", "channels defaults, http://127.0.0.1:18080/repository/conda-proxy/main"),
    # A user condarc pointing channel names at anaconda.org.
    ("/root/.condarc", "channel_alias: https://conda.anaconda.org\n", "channel_alias https://conda.anaconda.org"),
    # A channel URL off the mirror, with credentials (they must not be printed).
    ("/root/.condarc", "channels:\n  - https://user:s3cret@conda.example.com/forge\n",
     "channel URLs off the mirror: https://conda.example.com/forge/linux-64"),
])
def test_condarc_overridden_elsewhere_is_detected(host, path, content, expected):
    host.check_output(f"printf '%s' {shlex.quote(content)} > {path}")
    try:
        result = run_role("conda")
    finally:
        host.check_output(f"rm -f {path}")
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert "does not use only the mirror set in /etc/conda/.condarc (conda_condarc_path)" in message, message
    assert expected in message, message
    assert "s3cret" not in result.output
    assert result.changed == 0


# ----------------------------------------------------------------------------- bad input
# Every settings rule is unit-tested case by case (tests/unit/plugins/filter/test_conda_settings.py);
# this proves the wiring: the run stops before changing the host, the message names setting and host.

@pytest.mark.bad_input
def test_bad_input_fails_before_any_change(host):
    before = snapshot(host, PREFIX)
    result = run_role("conda", extra_vars={"conda_installer_sha256": "abc123"})
    assert result.rc != 0
    message = result.failure(NODE)["msg"]
    assert "conda_installer_sha256 must be the SHA-256 of the installer" in message, message
    assert f"got 'abc123' for host {NODE}" in message, message
    assert result.changed == 0, result
    assert snapshot(host, PREFIX) == before


# ----------------------------------------------------------------------------- the double

def test_double_refuses_a_python_the_node_lacks_like_conda(host):
    # python_env's conda provider relies on this: conda offline cannot create python 3.10.12 here.
    result = host.run(f"{PREFIX}/bin/conda create --yes --quiet --prefix /opt/conda-test.env python=3.10.12")
    assert result.rc == 1
    assert "PackagesNotFoundError" in result.stderr
    assert "  - python=3.10.12" in result.stderr
    assert not host.file("/opt/conda-test.env").exists
