"""Live progress from ansible-runner's events, and the run report built from the same events.

One `RunRecorder` receives every event (ansible-runner's `event_handler`): it prints the progress
and keeps, per host, the counts, the changed tasks, the failures, the first and last time the host
was worked on, and the health records of the chatchat_health role (the fact chatchat_health_result, by
its stage: before/after), whatever the task that sets them is called.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

# Facts the playbooks set for the tool: the chatchat_health role's record, and the lines of a result
# for people (playbooks/status.yml's table), printed after the run.
HEALTH_FACT = "chatchat_health_result"
DISPLAY_FACT = "chatfleet_display"
RESULT_EVENTS = {
    "runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def _time(event: dict) -> datetime | None:
    stamp = event.get("created")
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc)


def _task_label(data: dict) -> str:
    task = data.get("task", "")
    role = data.get("role")
    return f"{role} : {task}" if role else task


def _message(res: dict) -> str:
    """What went wrong, in one line: the module's message and the command's stderr; for a loop, those of
    each failed item, named by its label."""
    if isinstance(res.get("results"), list):
        failed = [r for r in res["results"] if isinstance(r, dict) and (r.get("failed") or r.get("unreachable"))]
        if failed:
            return " | ".join(f"{r.get('_ansible_item_label', r.get('item', ''))}: {_message(r)}" for r in failed)[:600]
    parts = [res.get("msg") or res.get("reason") or ""]
    if res.get("stderr"):
        parts.append(res["stderr"])
    text = ": ".join(" ".join(map(str, p)) if isinstance(p, list) else str(p) for p in parts if p)
    return " ".join(text.split())[:600]


@dataclass
class HostRecord:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0
    changed_tasks: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    task: str = ""

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


class RunRecorder:
    """ansible-runner event handler: prints progress, records what each host did."""

    def __init__(self, out: TextIO | None = None, verbose: bool = False):
        self.out, self.verbose = out, verbose
        self.hosts: dict[str, HostRecord] = {}
        self.plays: list[str] = []
        self.displays: list[str] = []
        # A live view (chatfleet/live.py) on a terminal, which then replaces the per-result lines.
        self.view: Any = None
        self.started: datetime | None = None
        self.ended: datetime | None = None

    def __call__(self, event: dict) -> bool:
        self.handle(event)
        return True  # keep the event in the artifacts too

    def handle(self, event: dict) -> None:
        kind, data = event.get("event", ""), event.get("event_data") or {}
        when = _time(event)
        if when:
            self.started = self.started or when
            self.ended = when
        if kind == "playbook_on_play_start":
            self.plays.append(data.get("play", ""))
            if self.view:
                self.view.play_started(data.get("play", ""))
            else:
                self._print(f"== {data.get('play', '')}")
            return
        host = data.get("host")
        if not host or not (kind in RESULT_EVENTS or kind == "runner_on_start"):
            return
        record = self.hosts.setdefault(host, HostRecord())
        if when:
            record.first = record.first or when
            record.last = when
        if kind == "runner_on_start":
            record.task = _task_label(data)
            if self.view:
                self.view.task_started(host, record.task)
            return
        res = data.get("res") or {}
        outcome = RESULT_EVENTS[kind]
        if outcome == "failed" and data.get("ignore_errors"):
            outcome = "ok"
        if outcome == "ok" and res.get("changed"):
            outcome = "changed"
        if outcome == "changed":
            record.changed += 1
            record.changed_tasks.append(_task_label(data))
            if res.get("diff"):
                record.diffs.append({"task": _task_label(data), "diff": res["diff"]})
        elif outcome in ("failed", "unreachable"):
            setattr(record, outcome, getattr(record, outcome) + 1)
            record.failures.append({"task": _task_label(data), "msg": _message(res)})
        else:
            setattr(record, outcome, getattr(record, outcome) + 1)
        facts = res.get("ansible_facts") or {}
        if isinstance(facts.get(DISPLAY_FACT), list):
            self.displays.append("\n".join(map(str, facts[DISPLAY_FACT])))
        if isinstance(facts.get(HEALTH_FACT), dict):
            record.health[facts[HEALTH_FACT].get("stage", "now")] = facts[HEALTH_FACT]
        if self.view:
            self.view.result(host, outcome, _task_label(data),
                             record.failures[-1]["msg"] if outcome in ("failed", "unreachable") else "")
        elif outcome != "ok" and outcome != "skipped" or self.verbose:
            self._print(f"  {host:<24} {outcome:<11} {record.task}"
                        f"{'  ' + record.failures[-1]['msg'] if outcome in ('failed', 'unreachable') else ''}"
                        f"   [ok={record.ok} changed={record.changed} failed={record.failed}]")

    def _print(self, line: str) -> None:
        print(line, file=self.out or sys.stdout, flush=True)


def build_report(recorder: RunRecorder, *, command: str, playbook: str, inventory: str, limit: str | None,
                 targets: list[str], batches: list[list[str]], rc: int, runner_status: str,
                 artifacts: Path) -> dict[str, Any]:
    """The run as data: per host what changed, how long it took, its health before and after."""
    hosts = {}
    batched = {host for batch in batches for host in batch}
    for name in targets:
        record = recorder.hosts.get(name)
        # A GPU node of the batches that never got its first GPU play task (the health probe before
        # the change) was not reached: the rollout stopped before its batch (the preflight ran on it).
        if record is None or (name in batched and "before" not in record.health):
            hosts[name] = {"status": "not run", "ok": 0, "changed": 0, "failed": 0, "changed_tasks": [],
                           "failures": [], "seconds": 0.0, "health_before": None, "health_after": None}
            continue
        seconds = (record.last - record.first).total_seconds() if record.first and record.last else 0.0
        hosts[name] = {
            "status": record.status, "ok": record.ok, "changed": record.changed,
            "failed": record.failed + record.unreachable, "skipped": record.skipped,
            "changed_tasks": record.changed_tasks, "failures": record.failures, "diffs": record.diffs,
            "seconds": round(seconds, 1),
            "health_before": record.health.get("before"),
            "health_after": record.health.get("after") or record.health.get("now"),
        }
    failed = [h for h, r in hosts.items() if r["status"] in ("failed", "unreachable")]
    seconds = (recorder.ended - recorder.started).total_seconds() if recorder.started and recorder.ended else 0.0
    return {
        "command": command, "playbook": playbook, "inventory": inventory, "limit": limit, "rc": rc,
        "result": "failed" if rc != 0 or failed else "successful", "runner_status": runner_status,
        "started": recorder.started.isoformat() if recorder.started else None,
        "seconds": round(seconds, 1), "batches": batches, "failed_hosts": failed,
        "not_run": [h for h, r in hosts.items() if r["status"] == "not run"],
        "artifacts": str(artifacts), "hosts": hosts,
    }


def _health_cell(health: dict | None) -> str:
    if not health:
        return "-"
    if health.get("healthy"):
        tokens = sum(c.get("tokens", 0) for c in health.get("completions", {}).values())
        return f"healthy ({tokens} tokens)"
    return "UNHEALTHY: " + "; ".join(health.get("problems", []))[:200]


def markdown(report: dict[str, Any]) -> str:
    """The report for people: a summary, one row per host, then what changed and what failed."""
    lines = [f"# chatfleet {report['command']}: {report['result']}", "",
             f"- playbook: `{report['playbook']}`, inventory: `{report['inventory']}`, limit: "
             f"`{report['limit'] or 'all'}`",
             f"- started {report['started']}, {report['seconds']} s, exit code {report['rc']}",
             f"- batches: {' → '.join('[' + ', '.join(b) + ']' for b in report['batches']) or '-'}"]
    if report["failed_hosts"]:
        lines.append(f"- **failed: {', '.join(report['failed_hosts'])}**")
    if report["not_run"]:
        lines.append(f"- not run (the rollout stopped before them, or no play targets them): "
                     f"{', '.join(report['not_run'])}")
    lines += ["", "| host | result | changed | seconds | health before | health after |",
              "| --- | --- | ---: | ---: | --- | --- |"]
    for name, host in report["hosts"].items():
        lines.append(f"| {name} | {host['status']} | {host['changed']} | {host['seconds']} | "
                     f"{_health_cell(host['health_before'])} | {_health_cell(host['health_after'])} |")
    for name, host in report["hosts"].items():
        if host["changed_tasks"] or host["failures"]:
            lines += ["", f"## {name}"]
            lines += [f"- changed: {task}" for task in host["changed_tasks"]]
            lines += [f"- **failed**: {f['task']}: {f['msg']}" for f in host["failures"]]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_md = directory / "report.json", directory / "report.md"
    as_json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    as_md.write_text(markdown(report))
    return as_json, as_md
