#!/usr/bin/python
# -*- coding: utf-8 -*-
"""One step of a backup or a restore of a node's data (module_utils/data_archive.py does the work)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: chatfleet_backup
short_description: Snapshot, archive, prune, verify, stage or swap a node's data directories
description:
  - C(snapshot) copies each component's directory into a working copy in I(backup_dir) (the writers
    are stopped around this step only) and removes what killed runs of the host left.
  - C(archive) packs the working copy into <host>-<stamp>.tar.gz with a sha256 per file, then writes
    <host>-<stamp>.manifest.json (sizes, sha256, I(meta), the knowledge bases in Chatchat's database).
  - C(prune) keeps the newest I(keep) whole backups of the host.
  - C(verify) finds the backup (I(archive)), checks its sha256, I(expect) and the components against
    I(targets), and fails when live data would be replaced without I(confirm). It changes nothing.
  - C(stage) extracts each component beside its target, checking every file's sha256.
  - C(swap) puts the staged components in place, keeping the replaced data as <target>.pre-restore.
options:
  action: {description: The step., type: str, required: true,
           choices: [snapshot, archive, prune, verify, stage, swap]}
  backup_dir: {description: Directory of the host's backups., type: path, required: true}
  host: {description: The inventory name the backups are named after., type: str, required: true}
  stamp: {description: The run's time stamp (YYYYMMDDTHHMMSSZ); snapshot and archive., type: str}
  sources: {description: "Component name -> data directory to back up (snapshot).", type: dict, default: {}}
  meta: {description: Versions and release recorded in the manifest (archive)., type: dict, default: {}}
  compresslevel: {description: gzip level of the archive (1 fastest)., type: int, default: 1}
  keep: {description: Whole backups of the host kept (prune)., type: int, default: 7}
  archive: {description: "The backup to restore: latest, a time stamp or a path (verify).", type: str, default: latest}
  expect: {description: "Manifest keys that must equal these values (verify), e.g. milvus_version.", type: dict, default: {}}
  targets: {description: "Component name -> live data directory to restore (verify, stage, swap).", type: dict, default: {}}
  manifest_path: {description: The manifest verify returned (stage, swap)., type: path}
  confirm: {description: Allow a restore to replace live data (verify)., type: bool, default: false}
"""

RETURN = r"""
manifest: {description: The backup's manifest (archive, verify)., type: dict}
manifest_path: {description: Path of the manifest (archive, verify)., type: str}
archive: {description: Path of the archive (archive, verify)., type: str}
seconds: {description: Time the step took., type: float}
removed: {description: Backups removed by prune., type: list}
kept: {description: "Component -> where the replaced data was kept (swap).", type: dict}
"""

import json
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.data_archive import (
    BackupError, archive, complete_backups, find, live, prune, snapshot, stage, swap, verify,
)


def run(module):
    p = module.params
    action, backup_dir, host = p["action"], p["backup_dir"], p["host"]
    if action in ("snapshot", "archive") and not p["stamp"]:
        raise BackupError(f"{action} needs the run's stamp")
    if action == "snapshot":
        return dict(changed=True, **snapshot(backup_dir, host, p["stamp"], p["sources"]))
    if action == "archive":
        return dict(changed=True, **archive(backup_dir, host, p["stamp"], p["meta"], p["compresslevel"]))
    if action == "prune":
        before = complete_backups(backup_dir, host)
        removed = [] if module.check_mode else prune(backup_dir, host, p["keep"])
        return dict(changed=bool(removed) or (module.check_mode and len(before) > p["keep"]), removed=removed)
    if action == "verify":
        manifest_path = find(backup_dir, host, p["archive"])
        manifest = verify(manifest_path, p["expect"], p["targets"])
        occupied = live(p["targets"])
        if occupied and not p["confirm"]:
            raise BackupError(
                f"restoring {manifest_path.name} onto {host} replaces the live data in {', '.join(occupied)} "
                f"(kept as <dir>.pre-restore). Add -e restore_confirm=true (chatfleet restore --yes) to go ahead. "
                f"Nothing was changed")
        return dict(changed=False, manifest=manifest, manifest_path=str(manifest_path),
                    archive=str(manifest_path.with_name(manifest["archive"])), live=occupied)
    manifest_path = Path(p["manifest_path"])
    manifest = json.loads(manifest_path.read_text())
    if action == "stage":
        return dict(changed=True, **stage(manifest, manifest_path, p["targets"]))
    return dict(changed=True, kept=swap(manifest, p["targets"]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True, choices=["snapshot", "archive", "prune", "verify", "stage", "swap"]),
            backup_dir=dict(type="path", required=True),
            host=dict(type="str", required=True),
            stamp=dict(type="str"),
            sources=dict(type="dict", default={}),
            meta=dict(type="dict", default={}),
            compresslevel=dict(type="int", default=1),
            keep=dict(type="int", default=7),
            archive=dict(type="str", default="latest"),
            expect=dict(type="dict", default={}),
            targets=dict(type="dict", default={}),
            manifest_path=dict(type="path"),
            confirm=dict(type="bool", default=False),
        ),
        required_if=[("action", "stage", ["manifest_path"]), ("action", "swap", ["manifest_path"])],
        supports_check_mode=True,
    )
    if module.check_mode and module.params["action"] not in ("verify", "prune"):
        module.exit_json(changed=True, msg=f"check mode: {module.params['action']} skipped")
    try:
        module.exit_json(**run(module))
    except BackupError as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
