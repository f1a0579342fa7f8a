"""listen_port_conflicts over real `ss -Hltnp` lines (recorded on Debian 12 with Milvus Lite and nginx)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("listen_ports", ROOT / "filter_plugins" / "listen_ports.py")
listen_ports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(listen_ports)
listen_port_conflicts = listen_ports.listen_port_conflicts

SS = """\
LISTEN 0      4096       127.0.0.1:2379       0.0.0.0:*    users:(("milvus",pid=5751,fd=12))
LISTEN 0      4096               *:19530            *:*    users:(("milvus",pid=5751,fd=25))
LISTEN 0      4096               *:9091             *:*    users:(("milvus",pid=5751,fd=18))
LISTEN 0      511          0.0.0.0:18080      0.0.0.0:*    users:(("nginx",pid=812,fd=6),("nginx",pid=811,fd=6))
LISTEN 0      511             [::]:18080         [::]:*    users:(("nginx",pid=812,fd=7),("nginx",pid=811,fd=7))
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*
"""


def test_own_ports_are_not_conflicts():
    assert listen_port_conflicts(SS, [19530, 9091, 2379], ["milvus"]) == []


def test_a_port_held_by_another_process_is_named_once_with_its_processes():
    assert listen_port_conflicts(SS, [19530, 18080], ["milvus"]) == [
        "port 18080 is in use by nginx (pid 812), nginx (pid 811)"]


def test_without_owners_the_service_itself_conflicts():
    assert listen_port_conflicts(SS, [9091]) == ["port 9091 is in use by milvus (pid 5751)"]


def test_a_socket_without_process_column_is_a_conflict():
    assert listen_port_conflicts(SS, [22], ["milvus"]) == ["port 22 is in use by a process ss cannot name"]


def test_owned_ports_are_not_conflicts_even_when_ss_cannot_name_the_process():
    unnamed = "\n".join(line.split(" users:")[0] for line in SS.splitlines())
    assert listen_port_conflicts(unnamed, [19530, 9091], ["milvus"], [19530, 9091]) == []
    assert listen_port_conflicts(unnamed, [19530, 18080], ["milvus"], [19530]) == [
        "port 18080 is in use by a process ss cannot name"]


def test_free_ports_and_prefix_lookalikes_are_not_matched():
    assert listen_port_conflicts(SS, [1953, 909, 8080], ["milvus"]) == []


def test_bad_input_is_an_error():
    with pytest.raises(AnsibleFilterError):
        listen_port_conflicts(None, [1])
    with pytest.raises(AnsibleFilterError):
        listen_port_conflicts(SS, ["x"])
