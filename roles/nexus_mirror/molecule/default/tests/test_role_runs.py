"""Run the role again through ansible-playbook with other inputs, against the molecule node.

Bad input must fail in preflight, before the host changes; credentials and a private CA
must land in mode-0600 files / the system trust store without showing up in the output.
"""
from __future__ import annotations

import shlex
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from testlib import MIRROR_URL, PlaybookRun, run_playbook, run_role

NODE = "nexus-mirror-node"
# Runs show diffs and task results: no secret may show up in either.
SHOW = ("--diff", "-v")
CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"


def changed(run: PlaybookRun) -> int:
    """Tasks the run changed on the node; a run that never reached the node's recap fails the test."""
    assert NODE in run.recap, run
    return run.recap[NODE]["changed"]


# Right after the converge, before any test changes the node: molecule's own idempotence step, as
# a marked test (every scenario proves its idempotence in one, counted in the proof report).
@pytest.mark.idempotence
def test_a_second_converge_changes_nothing():
    run = run_playbook(CONVERGE)
    assert run.rc == 0 and run.changed == 0, run
    assert NODE in run.recap, run


# Every settings rule is unit-tested case by case (tests/unit/plugins/filter/test_nexus_mirror.py);
# this proves the wiring: the run stops before changing the host, the message names setting and host.
@pytest.mark.bad_input
def test_bad_input_fails_before_any_change(host):
    before = host.check_output("sha256sum /etc/pip.conf /etc/conda/.condarc /etc/apt/sources.list.d/*")
    run = run_role("nexus_mirror", *SHOW, hosts=NODE, gather_facts=True,
                   extra_vars={"nexus_mirror_pypi_index_url": "ftp://mirror/simple/"})
    assert run.rc != 0, run
    message = run.failure(NODE)["msg"]
    assert "nexus_mirror_pypi_index_url must be an http(s) URL" in message, message
    assert f"got 'ftp://mirror/simple/' for host {NODE}" in message, message
    assert changed(run) == 0, run
    assert host.check_output("sha256sum /etc/pip.conf /etc/conda/.condarc /etc/apt/sources.list.d/*") == before


# Where the password could land on the node, readable by anyone: every file holding it (raw or in the
# URL-encoded form pip.conf and .condarc hold) must be closed to other users.
SECRET_DIRS = "/etc /tmp /var /root /home /opt /srv /run /usr/local"


def files_holding(host, *needles: str) -> dict[str, int]:
    """Every file under SECRET_DIRS holding one of `needles`, with its mode."""
    patterns = " ".join(f"-e {shlex.quote(n)}" for n in needles)
    found = host.run(f"grep -rlsF {patterns} {SECRET_DIRS}").stdout.split()
    return {path: int(host.check_output(f"stat -c %a {shlex.quote(path)}"), 8) for path in found}


@pytest.mark.security
def test_credentials_and_private_ca(host, tmp_path):
    key, cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=nexus-mirror test CA", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    pem = cert.read_text()
    password = "s3cr/t@pw%x"
    out = "/tmp/nexus-mirror-credentials"
    host.run(f"mkdir -p {out}")
    run = run_role("nexus_mirror", *SHOW, hosts=NODE, gather_facts=True, extra_vars={
        "nexus_mirror_username": "labuser",
        "nexus_mirror_password": password,
        "nexus_mirror_ca_cert": pem,
        "nexus_mirror_ca_cert_path": "/usr/local/share/ca-certificates/nexus-mirror-test.crt",
        "nexus_mirror_pip_conf_path": f"{out}/pip.conf",
        "nexus_mirror_condarc_path": f"{out}/conda/.condarc",
        "nexus_mirror_apt_sources_path": f"{out}/nexus-mirror.sources",
        "nexus_mirror_apt_auth_path": f"{out}/auth.conf.d/nexus-mirror.conf",
    })
    assert run.rc == 0, run
    quoted = urllib.parse.quote(password, safe="")
    assert quoted == "s3cr%2Ft%40pw%25x"
    for form in (password, quoted):
        assert form not in run.output, f"the password ({form}) shows in the run's output"
    holders = files_holding(host, password, quoted)
    assert f"{out}/pip.conf" in holders and f"{out}/auth.conf.d/nexus-mirror.conf" in holders  # the scan sees them
    assert {path: oct(mode) for path, mode in holders.items() if mode & 0o004} == {}, "world-readable"

    encoded = f"labuser:{quoted}@"
    pip_conf = host.file(f"{out}/pip.conf")
    assert pip_conf.mode == 0o600
    assert f"index-url = http://{encoded}{MIRROR_URL.split('://', 1)[1]}/repository/pypi-proxy/simple/" in pip_conf.content_string
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in pip_conf.content_string
    condarc = host.file(f"{out}/conda/.condarc")
    assert condarc.mode == 0o600
    assert encoded in condarc.content_string
    assert 'ssl_verify: "/etc/ssl/certs/ca-certificates.crt"' in condarc.content_string
    auth = host.file(f"{out}/auth.conf.d/nexus-mirror.conf")
    assert auth.mode == 0o600
    assert f"machine {MIRROR_URL}/repository/apt-debian/ login labuser password {password}" in auth.content_string
    # The CA went into the system bundle that pip and conda are pointed at.
    pem_body = "".join(pem.strip().splitlines()[1:-1])
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert pem_body in bundle.replace("\n", "")


def test_exclusive_mode_is_reversible(host):
    run = run_role("nexus_mirror", *SHOW, hosts=NODE, gather_facts=True, extra_vars={"nexus_mirror_apt_exclusive": False})
    assert run.rc == 0, run
    restored = host.file("/etc/apt/sources.list")
    assert restored.is_file
    assert "deb " in restored.content_string
    assert not host.file("/etc/apt/nexus-mirror-backup/sources.list").exists

    run = run_role("nexus_mirror", *SHOW, hosts=NODE, gather_facts=True, extra_vars={"nexus_mirror_apt_exclusive": True})
    assert run.rc == 0, run
    assert not host.file("/etc/apt/sources.list").exists
    assert host.file("/etc/apt/nexus-mirror-backup/sources.list").is_file


@pytest.mark.check_mode
def test_check_mode_on_the_converged_host_changes_nothing(host):
    run = run_role("nexus_mirror", "--check", hosts=NODE, gather_facts=True)
    assert run.rc == 0, run
    assert changed(run) == 0, run
