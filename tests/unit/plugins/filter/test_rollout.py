"""rollout_batches: Ansible's serial arithmetic, and the refusal of a rollout without a canary."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("rollout", ROOT / "filter_plugins" / "rollout.py")
rollout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rollout)
rollout_batches = rollout.rollout_batches


@pytest.mark.parametrize(("serial", "hosts", "batches"), [
    ([1, "25%"], 9, [1, 2, 2, 2, 2]),
    ([1, "25%"], 2, [1, 1]),
    ([1, "25%"], 1, [1]),
    ([1, "50%"], 40, [1, 20, 19]),
    ("30%", 10, [3, 3, 3, 1]),
    ("10%", 3, [1, 1, 1]),          # a percentage rounds down, but a batch holds at least one host
    (2, 5, [2, 2, 1]),
    ("2", 5, [2, 2, 1]),            # -e rollout_serial=2 arrives as a string
    ([1, 3, "100%"], 10, [1, 3, 6]),
    ([1], 0, []),
])
def test_batches_follow_ansibles_serial(serial, hosts, batches):
    assert rollout_batches(serial, hosts) == batches
    assert sum(batches) == hosts


def test_the_real_ansible_computes_the_same_batch_sizes():
    from ansible.utils.helpers import pct_to_int
    for hosts in (1, 2, 3, 7, 40):
        for value in ("1%", "25%", "33%", "50%", "99%", 1, 3):
            assert rollout_batches([value, "100%"], hosts, allow_all_at_once=True)[0] == min(pct_to_int(value, hosts), hosts)


@pytest.mark.parametrize("serial", ["100%", 2, 5, [2, 1], ["100%", 1]])
def test_a_first_batch_of_every_node_is_refused_without_the_override(serial):
    with pytest.raises(AnsibleFilterError, match="rollout_allow_all_at_once"):
        rollout_batches(serial, 2)
    assert rollout_batches(serial, 2, allow_all_at_once=True) == [2]


def test_a_single_node_fleet_needs_no_canary():
    assert rollout_batches("100%", 1) == [1]


@pytest.mark.parametrize(("serial", "message"), [
    (0, "at least 1"),
    (-1, "at least 1"),
    ("0%", "from 1% to 100%"),
    ("150%", "from 1% to 100%"),
    ("a few", "not a batch size"),
    (True, "not a batch size"),
    ([], "empty list"),
])
def test_bad_serial_values_name_the_variable(serial, message):
    with pytest.raises(AnsibleFilterError, match=message) as error:
        rollout_batches(serial, 4)
    assert "rollout_serial" in str(error.value)
