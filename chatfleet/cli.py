"""chatfleet: run the project's playbooks on a fleet through ansible-runner, with checks first and a report.

  chatfleet site|rollout|status|check|uninstall|backup|restore -i INVENTORY [--limit PATTERN] [options]

Before anything runs, the tool checks the inventory, the --limit (empty, or naming no group or host),
the rollout batches (a first batch of every GPU node needs --allow-all-at-once) and the vault password;
any problem exits 2 with what to do, and no host is contacted. During the run it prints one line per
changed, failed or unreachable task result (all results with -v). After it, it writes report.json and
report.md (per host: result, changed tasks, seconds, health before and after) under the artifacts
directory, next to ansible-runner's own artifacts, and exits 1 when any host failed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from . import __version__, project, report
from .inventory import UsageError, batches, check_vault, load_fleet
from .live import LiveView


def default_serial() -> list[Any]:
    """The GPU plays' batches when no --serial is given (`serial: "{{ rollout_serial | default(fleet_default_serial) }}"`):
    read from the playbooks' own defaults, so that the tool plans the batches Ansible will run."""
    return yaml.safe_load((project.root() / "playbooks" / "vars" / "fleet.yml").read_text())["fleet_default_serial"]

PLAYBOOKS = {
    "site": "site.yml",
    "rollout": "playbooks/rollout.yml",
    "status": "playbooks/status.yml",
    "check": "site.yml",
    "uninstall": "playbooks/uninstall.yml",
    "backup": "playbooks/backup.yml",
    "restore": "playbooks/restore.yml",
}
BATCHED = ("site", "rollout", "check")


def _serial(text: str) -> list[Any]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("--serial needs at least one batch size, e.g. 1,25%")
    return [int(v) if v.isdigit() else v for v in values]


def _extra_var(text: str) -> dict[str, Any]:
    """-e KEY=VALUE or -e JSON (as ansible-playbook; @file is passed through as it is)."""
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"-e {text!r} is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"-e {text!r} must be a JSON object")
        return value
    if text.startswith("@"):
        return {"@": text}
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"-e {text!r}: use KEY=VALUE, a JSON object or @FILE")
    return {key.strip(): value}


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="chatfleet", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--version", action="version", version=f"chatfleet {__version__}")
    commands = cli.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "site": "converge the whole site (site.yml), GPU nodes in batches behind health gates",
        "rollout": "change the release, a model revision or the config on GPU nodes, in batches behind health gates",
        "status": "one table of every node: GPU, driver/CUDA, release, fschat and its patch, models, services, health",
        "check": "check mode with diff over the site: what would change on each host (drift)",
        "uninstall": "stop and remove the services and units (data, models, env and Milvus data kept unless --purge)",
        "backup": "back up each host's knowledge bases and Milvus data (an archive and manifest per host)",
        "restore": "restore each host's knowledge bases and Milvus data from one of its backups",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("-i", "--inventory", required=True, help="inventory directory or file, e.g. inventories/prod")
        sub.add_argument("-l", "--limit", help="a group, host or pattern (a100, lab-l40-1, gpu_nodes:!a100)")
        sub.add_argument("-e", "--extra-vars", action="append", type=_extra_var, default=[], metavar="VARS",
                         help="KEY=VALUE, a JSON object or @FILE, as for ansible-playbook (repeatable)")
        sub.add_argument("--vault-password-file", help="needed when the inventory holds vault-encrypted data")
        sub.add_argument("--forks", type=int, help="parallel hosts (ansible.cfg's forks otherwise)")
        sub.add_argument("--tags", help="run only these tags (for example chatchat_services)")
        sub.add_argument("--artifacts", type=Path,
                         help="where each run's directory (report.json, report.md, runner artifacts) goes "
                              "(default: artifacts/ in the project)")
        sub.add_argument("--project-dir",
                         help="the project checkout whose playbooks run (default: $CHATFLEET_ROOT, the current "
                              "directory or a parent of it, or the checkout the tool is installed from)")
        sub.add_argument("-v", "--verbose", action="store_true", help="print every task result, not only changes")
        sub.add_argument("--no-live", action="store_true",
                         help="print a line per changed or failed result even on a terminal (no live view)")
        if name in BATCHED:
            sub.add_argument("--serial", type=_serial,
                             help="GPU node batch sizes, e.g. 1,25%% (default: a canary of 1, then 25%%)")
            sub.add_argument("--max-fail-percentage", type=int, default=0,
                             help="failed hosts a batch may have before the rollout stops (default 0)")
            sub.add_argument("--allow-all-at-once", action="store_true",
                             help="allow a first batch that holds every GPU node (no canary)")
        if name == "rollout":
            sub.add_argument("--rollback", action="store_true",
                             help="point each GPU node back at its previous kept release (playbooks/rollback.yml)")
        if name == "uninstall":
            sub.add_argument("--purge", action="store_true",
                             help="also delete releases, env, models, knowledge bases and Milvus data")
            sub.add_argument("--yes", action="store_true", help="confirm: services go down on every targeted host")
        if name == "restore":
            sub.add_argument("--archive", default="latest",
                             help="the backup of each host: latest (default), a time stamp or a path")
            sub.add_argument("--yes", action="store_true",
                             help="confirm: replace the live data (kept as <dir>.pre-restore)")
    return cli


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Everything checked and decided before anything runs; UsageError on bad input."""
    if args.forks is not None and args.forks < 1:
        raise UsageError("--forks must be at least 1")
    fleet = load_fleet(args.inventory)
    targets = fleet.match(args.limit)
    vault = check_vault(args.inventory, args.vault_password_file)
    extravars: dict[str, Any] = {}
    files = []
    for item in args.extra_vars:
        if "@" in item:
            files.append(item["@"])
        else:
            extravars.update(item)
    planned: list[list[str]] = []
    if args.command in BATCHED:
        if not 0 <= args.max_fail_percentage <= 100:
            raise UsageError("--max-fail-percentage must be from 0 to 100")
        args.serial = args.serial or default_serial()
        planned = batches(fleet, targets, args.serial, args.allow_all_at_once)
        extravars.update(rollout_serial=args.serial, rollout_max_fail_percentage=args.max_fail_percentage,
                         rollout_allow_all_at_once=args.allow_all_at_once)
    if args.command == "uninstall":
        if not args.yes:
            raise UsageError(f"uninstall stops the services on {len(targets)} host(s) ({', '.join(targets)}): "
                             f"add --yes to confirm")
        extravars.update(uninstall_confirm=True, uninstall_purge=args.purge)
    if args.command == "restore":
        extravars.update(restore_archive=args.archive, restore_confirm=args.yes)
    playbook = PLAYBOOKS[args.command]
    if args.command == "rollout" and args.rollback:
        playbook = "playbooks/rollback.yml"
    cmdline = []
    if args.command == "check":
        cmdline += ["--check", "--diff"]
    if vault:
        cmdline += ["--vault-password-file", str(Path(vault).resolve())]
    for name in files:
        cmdline += ["-e", name]
    return {"fleet": fleet, "targets": targets, "batches": planned, "extravars": extravars, "cmdline": cmdline,
            "playbook": playbook}


def run(args: argparse.Namespace, decided: dict[str, Any]) -> int:
    import ansible_runner

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    root = project.root()
    run_dir = ((args.artifacts or root / "artifacts") / f"{stamp}-{args.command}").resolve()
    (run_dir / "runner").mkdir(parents=True)
    recorder = report.RunRecorder(verbose=args.verbose)
    print(f"chatfleet {args.command}: {decided['playbook']} on {len(decided['targets'])} host(s)"
          + (f", GPU node batches {decided['batches']}" if decided["batches"] else ""), flush=True)
    if sys.stdout.isatty() and not (args.no_live or args.verbose):
        recorder.view = LiveView(f"chatfleet {args.command}")
    with recorder.view or contextlib.nullcontext():
        result = ansible_runner.run(
            private_data_dir=str(run_dir / "runner"), project_dir=str(root), playbook=str(root / decided["playbook"]),
            inventory=str(Path(args.inventory).resolve()), limit=args.limit, extravars=decided["extravars"],
            forks=args.forks, tags=args.tags, cmdline=" ".join(decided["cmdline"]) or None,
            # The ansible-playbook of the Python that runs the tool (the project's venv) comes first.
            envvars={"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                     "ANSIBLE_CONFIG": str(root / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "false"},
            event_handler=recorder, quiet=True)
    data = report.build_report(recorder, command=args.command, playbook=decided["playbook"],
                               inventory=args.inventory, limit=args.limit, targets=decided["targets"],
                               batches=decided["batches"], rc=result.rc, runner_status=result.status,
                               artifacts=run_dir)
    as_json, as_md = report.write(data, run_dir)
    for text in recorder.displays:
        print(text, flush=True)
    print(report.markdown(data), flush=True)
    print(f"report: {as_json} and {as_md}", flush=True)
    if args.command == "check":
        drift = {h: r["changed_tasks"] for h, r in data["hosts"].items() if r["changed_tasks"]}
        print("drift: none" if not drift else "drift:\n" + "\n".join(
            f"  {h}: {len(t)} task(s) would change: {'; '.join(t)}" for h, t in drift.items()), flush=True)
    return 0 if data["result"] == "successful" else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        project.use(project.find(args.project_dir))
        decided = plan(args)
    except (UsageError, project.ProjectNotFound) as error:
        print(f"chatfleet {args.command}: {error}. Nothing was run.", file=sys.stderr)
        return 2
    return run(args, decided)


def entry_point() -> None:
    """The `chatfleet` command (pyproject.toml's console script)."""
    sys.exit(main())
