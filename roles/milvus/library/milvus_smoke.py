#!/usr/bin/python
# -*- coding: utf-8 -*-
"""The milvus role's smoke test: what Chatchat's vector store does, as the application user."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: milvus_smoke
short_description: Create a collection, insert, index, load, search and drop it, as a given user
description:
  - Leaves nothing behind (a collection left by an interrupted run is dropped first) and never
    reports a change. In check mode it only logs in and lists the collections.
options:
  host: {description: Milvus host., type: str, required: true}
  port: {description: Milvus client port., type: int, required: true}
  secure: {description: Connect with TLS., type: bool, default: false}
  ca_file: {description: CA file for TLS., type: str, default: ""}
  timeout: {description: Seconds per call., type: int, default: 10}
  user: {description: User to run as., type: str, required: true}
  password: {description: Its password., type: str, required: true}
  collection: {description: Name of the temporary collection., type: str, required: true}
"""

RETURN = r"""
round_trip_ms: {description: Milliseconds from login to the dropped collection., type: int, returned: when run}
steps_ms: {description: Milliseconds per step., type: dict, returned: when run}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.milvus_client import (CONNECTION_ARGS, LoginRefused, Unreachable, connect,
                                                disconnect, endpoint, import_error)

DIM = 8
ROWS = 32


def _vector(seed):
    return [float((seed * 7 + i * 3) % 11) / 10.0 for i in range(DIM)]


def run_smoke(params, alias):
    from pymilvus import (Collection, CollectionSchema, DataType, FieldSchema,  # pylint: disable=import-outside-toplevel
                          utility)

    name, timeout = params["collection"], params["timeout"]
    steps, started = {}, time.monotonic()

    def step(label):
        now = time.monotonic()
        steps[label] = int((now - step.last) * 1000)
        step.last = now
    step.last = started

    if utility.has_collection(name, using=alias):
        utility.drop_collection(name, using=alias)
    schema = CollectionSchema([FieldSchema("pk", DataType.INT64, is_primary=True),
                               FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=DIM)])
    collection = Collection(name, schema, using=alias)
    step("create")
    try:
        ids = list(range(ROWS))
        collection.insert([ids, [_vector(i) for i in ids]], timeout=timeout)
        collection.flush(timeout=timeout)
        step("insert")
        collection.create_index("embedding", {"index_type": "FLAT", "metric_type": "L2", "params": {}},
                                timeout=timeout)
        collection.load(timeout=timeout * 6)
        step("index_load")
        target = 5
        hits = collection.search([_vector(target)], "embedding", {"metric_type": "L2"}, limit=1,
                                 timeout=timeout)
        step("search")
        found = list(hits[0].ids)
        if found != [target]:
            raise RuntimeError("search for row %d returned %s" % (target, found))
    finally:
        utility.drop_collection(name, using=alias)
        step("drop")
    return int((time.monotonic() - started) * 1000), steps


def main():
    argument_spec = dict(CONNECTION_ARGS)
    argument_spec.update(
        user=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        collection=dict(type="str", required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    missing = import_error()
    if missing:
        module.fail_json(msg="pymilvus is not importable by %s: %s" % (__file__, missing))
    where = endpoint(params)
    try:
        alias = connect(params, "smoke", params["user"], params["password"])
    except LoginRefused as exc:
        module.fail_json(msg="Milvus at %s refuses user %s: %s" % (where, params["user"], exc))
    except Unreachable as exc:
        module.fail_json(msg="Cannot reach Milvus at %s: %s" % (where, exc))
    if module.check_mode:
        disconnect(alias)
        module.exit_json(changed=False, msg="logged in as %s; smoke test skipped in check mode" % params["user"])
    try:
        total, steps = run_smoke(params, alias)
    except Exception as exc:  # report any Milvus failure with the endpoint and user
        module.fail_json(msg="Smoke test as %s at %s failed: %s" % (params["user"], where, exc))
    finally:
        disconnect(alias)
    module.exit_json(changed=False, round_trip_ms=total, steps_ms=steps)


if __name__ == "__main__":
    main()
