"""Ansible callback for the tests: every failed task's host, name and message, as JSON lines.

testlib.run_playbook enables it with the file to write in CHATFLEET_FAILED_TASKS_FILE, so a test reads
the message of the task that stopped a host (PlaybookRun.failure) instead of searching the whole
output, where a variable's name also appears in task names and in the inputs Ansible echoes.
"""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: failed_tasks
type: aggregate
short_description: write each failed task's host, name and message as JSON lines (tests only)
description: the file is named by the environment variable CHATFLEET_FAILED_TASKS_FILE.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "failed_tasks"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, ignored: bool, unreachable: bool = False) -> None:
        path = os.environ.get("CHATFLEET_FAILED_TASKS_FILE")
        if not path:
            return
        outcome = result._result
        record = {"host": result._host.get_name(), "task": result._task.get_name(), "ignored": ignored,
                  "unreachable": unreachable, "msg": str(outcome.get("msg", "")),
                  "items": [str(item.get("msg", "")) for item in outcome.get("results", [])
                            if isinstance(item, dict) and item.get("failed")]}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, ignored=bool(ignore_errors))

    def v2_runner_on_unreachable(self, result):
        self._write(result, ignored=False, unreachable=True)
