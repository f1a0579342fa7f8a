#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Disk plan of the models role: which models are missing and whether the disk can take them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: model_space
short_description: Bytes the models still to be pulled need against the free space of the store
description:
  - Read-only. A model counts as present when its link already points at a verified checkout of the
    pinned revision; every other model counts with its manifest size.
options:
  root:
    description: Directory holding one link per model (Chatchat's MODEL_ROOT_PATH).
    type: path
    required: true
  store:
    description: Directory holding the revisions of every model.
    type: path
    required: true
  models:
    description: The enabled manifest entries, each with name, revision and size (bytes).
    type: list
    elements: dict
    required: true
  margin_percent:
    description: Extra space required on top of the sizes, in percent.
    type: float
    default: 10
  reserve_bytes:
    description: Space that must stay free after the pull.
    type: int
    default: 0
"""

RETURN = r"""
missing:
  description: Names of the models that are not present at their pinned revision.
  type: list
needed_bytes:
  description: Sum of the missing models' sizes plus the margin and the reserve.
  type: int
available_bytes:
  description: Free bytes on the filesystem of the store (of its nearest existing parent).
  type: int
measured_path:
  description: The existing directory whose filesystem was measured.
  type: str
fits:
  description: Whether available_bytes >= needed_bytes.
  type: bool
unmanaged:
  description: Models whose path under root exists and is not a link (e.g. a manual clone).
  type: list
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.model_store import free_bytes, is_present


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            store=dict(type="path", required=True),
            models=dict(type="list", elements="dict", required=True),
            margin_percent=dict(type="float", default=10),
            reserve_bytes=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    missing, missing_bytes, unmanaged = [], 0, []
    for model in params["models"]:
        dest = "%s/%s" % (params["root"], model["name"])
        if os.path.lexists(dest) and not os.path.islink(dest):
            unmanaged.append(model["name"])
        if not is_present(dest, params["store"], model["name"], model["revision"]):
            missing.append(model["name"])
            missing_bytes += int(model["size"])
    needed = int(missing_bytes * (1 + params["margin_percent"] / 100.0)) + params["reserve_bytes"] if missing else 0
    available, measured = free_bytes(params["store"])
    module.exit_json(changed=False, missing=missing, needed_bytes=needed, available_bytes=available,
                     measured_path=measured, fits=available >= needed, unmanaged=unmanaged)


if __name__ == "__main__":
    main()
