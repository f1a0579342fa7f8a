"""Run the role again through ansible-playbook with other inputs, against the molecule node.

Bad input must fail in preflight, before the host changes; credentials and a private CA
must land in mode-0600 files / the system trust store without showing up in the output.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

MIRROR = os.environ.get("LAB_MIRROR_URL", "http://127.0.0.1:18080").rstrip("/")
NODE = "nexus-mirror-node"
PLAYBOOK = """\
- name: Apply nexus_mirror
  hosts: {node}
  gather_facts: true
  roles:
    - role: nexus_mirror
"""


def run_role(tmp_path: Path, extra_vars: dict) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(node=NODE))
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(extra_vars))
    return subprocess.run(
        ["ansible-playbook", "--diff", "-v", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         "-e", f"@{varfile}", str(playbook)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600, check=False,
    )


@pytest.mark.parametrize(
    ("extra_vars", "variable"),
    [
        ({"nexus_mirror_pypi_index_url": "not a url"}, "nexus_mirror_pypi_index_url"),
        ({"nexus_mirror_pypi_index_url": "ftp://mirror/simple/"}, "nexus_mirror_pypi_index_url"),
        ({"nexus_mirror_pypi_extra_index_urls": ["nope"]}, "nexus_mirror_pypi_extra_index_urls"),
        ({"nexus_mirror_conda_url": ""}, "nexus_mirror_conda_url"),
        ({"nexus_mirror_apt_repositories": [{"uris": "bad", "suites": "x", "components": "y"}]},
         "nexus_mirror_apt_repositories"),
        ({"nexus_mirror_apt_repositories": []}, "nexus_mirror_apt_exclusive"),
        ({"nexus_mirror_username": "someone"}, "nexus_mirror_password"),
        ({"nexus_mirror_username": "some one", "nexus_mirror_password": "pw"}, "whitespace"),
    ],
)
def test_bad_input_fails_before_any_change(host, tmp_path, extra_vars, variable):
    before = host.check_output("sha256sum /etc/pip.conf /etc/conda/.condarc /etc/apt/sources.list.d/*")
    result = run_role(tmp_path, extra_vars)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())  # the yaml callback wraps long messages
    assert variable in message
    assert f"for host {NODE}" in message
    assert "changed=0" in result.stdout
    assert host.check_output("sha256sum /etc/pip.conf /etc/conda/.condarc /etc/apt/sources.list.d/*") == before


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
    result = run_role(tmp_path, {
        "nexus_mirror_username": "labuser",
        "nexus_mirror_password": password,
        "nexus_mirror_ca_cert": pem,
        "nexus_mirror_ca_cert_path": "/usr/local/share/ca-certificates/nexus-mirror-test.crt",
        "nexus_mirror_pip_conf_path": f"{out}/pip.conf",
        "nexus_mirror_condarc_path": f"{out}/conda/.condarc",
        "nexus_mirror_apt_sources_path": f"{out}/nexus-mirror.sources",
        "nexus_mirror_apt_auth_path": f"{out}/auth.conf.d/nexus-mirror.conf",
    })
    assert result.returncode == 0, result.stdout + result.stderr
    assert password not in result.stdout + result.stderr

    encoded = "labuser:s3cr%2Ft%40pw%25x@"
    pip_conf = host.file(f"{out}/pip.conf")
    assert pip_conf.mode == 0o600
    assert f"index-url = http://{encoded}{MIRROR.split('://', 1)[1]}/repository/pypi-proxy/simple/" in pip_conf.content_string
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in pip_conf.content_string
    condarc = host.file(f"{out}/conda/.condarc")
    assert condarc.mode == 0o600
    assert encoded in condarc.content_string
    assert 'ssl_verify: "/etc/ssl/certs/ca-certificates.crt"' in condarc.content_string
    auth = host.file(f"{out}/auth.conf.d/nexus-mirror.conf")
    assert auth.mode == 0o600
    assert f"machine {MIRROR}/repository/apt-debian/ login labuser password {password}" in auth.content_string
    # The CA went into the system bundle that pip and conda are pointed at.
    pem_body = "".join(pem.strip().splitlines()[1:-1])
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert pem_body in bundle.replace("\n", "")


def test_exclusive_mode_is_reversible(host, tmp_path):
    result = run_role(tmp_path, {"nexus_mirror_apt_exclusive": False})
    assert result.returncode == 0, result.stdout + result.stderr
    restored = host.file("/etc/apt/sources.list")
    assert restored.is_file
    assert "deb " in restored.content_string
    assert not host.file("/etc/apt/nexus-mirror-backup/sources.list").exists

    result = run_role(tmp_path, {"nexus_mirror_apt_exclusive": True})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not host.file("/etc/apt/sources.list").exists
    assert host.file("/etc/apt/nexus-mirror-backup/sources.list").is_file


def test_check_mode_on_the_converged_host_changes_nothing(host, tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(node=NODE))
    result = subprocess.run(
        ["ansible-playbook", "--check", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout
