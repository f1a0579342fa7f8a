"""lab/labctl.py free-ports: the nodes' sshd ports come from below the kernel's ephemeral range (no
outgoing connection can take one between its pick and sshd's bind), are free when picked, and two
scenarios picking at the same time never get the same port."""
from __future__ import annotations

import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import labctl  # noqa: E402


@pytest.fixture(autouse=True)
def state_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(labctl, "STATE_DIR", tmp_path)
    monkeypatch.setattr(labctl, "PORTS_HELD", tmp_path / "ports-held.json")


def ephemeral_range() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_ports_are_distinct_free_and_outside_the_ephemeral_range():
    ports = labctl.free_ports(5)
    assert len(set(ports)) == 5
    assert not set(ports) & set(ephemeral_range())
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_picked(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        taken = listener.getsockname()[1]
        monkeypatch.setattr(labctl, "SSH_PORT_RANGE", range(taken, taken + 2))
        listener.listen()
        assert labctl.free_ports(1) == [taken + 1]
        with pytest.raises(SystemExit, match="fewer than 1 free ports"):
            labctl.free_ports(1)  # taken + 1 is held for the first picker


def test_pickers_at_the_same_time_get_different_ports(monkeypatch):
    monkeypatch.setattr(labctl, "SSH_PORT_RANGE", range(23000, 23040))
    with ThreadPoolExecutor(max_workers=8) as pool:
        picks = list(pool.map(lambda _: labctl.free_ports(5), range(8)))
    every = [port for pick in picks for port in pick]
    assert sorted(every) == list(range(23000, 23040))


def test_a_hold_ends_after_its_time(monkeypatch):
    monkeypatch.setattr(labctl, "SSH_PORT_RANGE", range(23000, 23001))
    assert labctl.free_ports(1) == [23000]
    monkeypatch.setattr(labctl, "PORT_HOLD_SECONDS", 0)
    assert labctl.free_ports(1) == [23000]
