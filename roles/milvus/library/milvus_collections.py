#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Flush every collection and count its rows, or wait until collections hold their rows again."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: milvus_collections
short_description: Flush Milvus's collections and count their rows, or wait for expected row counts
description:
  - C(flush) seals every collection's growing data into segments on storage (what a backup copies;
    unflushed rows live only in the message queue and come back after a restart only once the
    server has replayed it) and returns each collection's row count.
  - C(wait) polls the collections of I(expect) until each holds its rows (for example after a
    restore), and fails naming those that do not.
  - Runs in the milvus role's client venv (pymilvus), as the application user.
options:
  action: {description: flush or wait., type: str, required: true, choices: [flush, wait]}
  host: {description: Milvus's address., type: str, required: true}
  port: {description: Milvus's port., type: int, required: true}
  secure: {description: Connect with TLS., type: bool, default: false}
  ca_file: {description: CA of the server's certificate., type: str, default: ""}
  timeout: {description: Seconds each call may take., type: int, default: 10}
  user: {description: Account to connect as., type: str, required: true}
  password: {description: Its password., type: str, required: true, no_log: true}
  expect: {description: "Collection -> rows it must hold (wait).", type: dict, default: {}}
  wait_timeout: {description: Seconds to wait for the rows (wait)., type: int, default: 300}
"""

RETURN = r"""
rows: {description: "Collection -> rows (flushed entities).", type: dict}
seconds: {description: Time the action took., type: float}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.milvus_client import (CONNECTION_ARGS, LoginRefused, Unreachable, connect,
                                                disconnect, endpoint, import_error)


def rows(alias, names):
    from pymilvus import Collection  # pylint: disable=import-outside-toplevel

    return {name: Collection(name, using=alias).num_entities for name in names}


def run(params, alias):
    from pymilvus import Collection, utility  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    if params["action"] == "flush":
        names = sorted(utility.list_collections(using=alias, timeout=params["timeout"]))
        for name in names:
            Collection(name, using=alias).flush(timeout=params["timeout"] * 6)
        return dict(rows=rows(alias, names), seconds=round(time.monotonic() - started, 3))
    deadline = started + params["wait_timeout"]
    while True:
        present = set(utility.list_collections(using=alias, timeout=params["timeout"]))
        found = rows(alias, sorted(set(params["expect"]) & present))
        short = {name: (found.get(name), want) for name, want in params["expect"].items() if found.get(name) != want}
        if not short or time.monotonic() > deadline:
            return dict(rows=found, short=short, seconds=round(time.monotonic() - started, 3))
        time.sleep(2)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            CONNECTION_ARGS,
            action=dict(type="str", required=True, choices=["flush", "wait"]),
            user=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            expect=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problem = import_error()
    if problem:
        module.fail_json(msg="pymilvus is not importable by %s: %s" % (module._name, problem))
    if module.check_mode:
        module.exit_json(changed=False, rows={}, msg="check mode: nothing flushed or read")
    try:
        alias = connect(params, "collections", params["user"], params["password"])
    except (LoginRefused, Unreachable) as exc:
        module.fail_json(msg="Milvus at %s: %s" % (endpoint(params), exc))
    try:
        result = run(params, alias)
    except Exception as exc:  # pymilvus raises MilvusException and raw grpc errors
        module.fail_json(msg="Milvus at %s: %s failed: %s" % (endpoint(params), params["action"], str(exc)[:500]))
    finally:
        disconnect(alias)
    if result.get("short"):
        module.fail_json(msg="Milvus at %s: after %d s these collections do not hold the rows of the backup "
                         "(found, expected): %s" % (endpoint(params), params["wait_timeout"], result["short"]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
