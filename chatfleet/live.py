"""The live view of a run on a terminal (rich): per batch (each start of a play, which Ansible repeats
for every serial batch) its hosts done, running and failed and its time; under the current batch each
running host with the task it is on and for how long. Failures are printed above the view as they
happen, so they stay in the terminal's scrollback. Used only when stdout is a TTY (cli.run)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

# Batches shown in full above the current one; earlier ones are summed up in one line.
RECENT_BATCHES = 4


@dataclass
class Batch:
    number: int
    play: str
    started: float
    ended: float | None = None
    hosts: dict[str, str] = field(default_factory=dict)  # host -> running, done or failed
    tasks: dict[str, tuple[str, float]] = field(default_factory=dict)  # host -> (task, since)

    def count(self, state: str) -> int:
        return sum(1 for value in self.hosts.values() if value == state)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class LiveView:
    """Fed by RunRecorder with each runner event; rich redraws it four times a second."""

    def __init__(self, title: str, console: Console | None = None):
        self.title = title
        self.console = console or Console()
        self.started = time.monotonic()
        self.batches: list[Batch] = []
        self.lock = threading.Lock()
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        with self.lock:
            if self.batches and self.batches[-1].ended is None:
                self._end(self.batches[-1])
        self.live.__exit__(*exc)

    def _end(self, batch: Batch) -> None:
        batch.ended = time.monotonic()
        for host, state in batch.hosts.items():
            if state == "running":
                batch.hosts[host] = "done"
        batch.tasks.clear()

    def play_started(self, play: str) -> None:
        with self.lock:
            if self.batches:
                self._end(self.batches[-1])
            self.batches.append(Batch(len(self.batches) + 1, play, time.monotonic()))

    def task_started(self, host: str, task: str) -> None:
        with self.lock:
            if self.batches:
                batch = self.batches[-1]
                if batch.hosts.get(host) != "failed":
                    batch.hosts[host] = "running"
                    batch.tasks[host] = (task, time.monotonic())

    def result(self, host: str, outcome: str, task: str, message: str = "") -> None:
        with self.lock:
            if self.batches:
                batch = self.batches[-1]
                if outcome in ("failed", "unreachable"):
                    batch.hosts[host] = "failed"
                    batch.tasks.pop(host, None)
                else:
                    batch.hosts.setdefault(host, "running")
        if outcome in ("failed", "unreachable"):
            self.console.print(Text(f"{host} {outcome}: {task}: {message}", style="bold red"))

    def __rich__(self) -> Group:
        with self.lock:
            now = time.monotonic()
            hosts = {}
            for batch in self.batches:
                hosts.update(batch.hosts)
            failed = sum(1 for state in hosts.values() if state == "failed")
            header = Text(f"{self.title}: {_clock(now - self.started)} elapsed, {len(hosts)} host(s) seen, "
                          f"{failed} failed", style="bold")
            table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
            for column in ("batch", "play", "done", "running", "failed", "time"):
                table.add_column(column, justify="right" if column in ("batch", "done", "running", "failed") else "left")
            earlier, recent = self.batches[:-RECENT_BATCHES], self.batches[-RECENT_BATCHES:]
            if earlier:
                table.add_row(f"1-{earlier[-1].number}", f"{len(earlier)} earlier batches",
                              str(sum(b.count("done") for b in earlier)), "0",
                              str(sum(b.count("failed") for b in earlier)), "")
            for batch in recent:
                table.add_row(str(batch.number), batch.play, str(batch.count("done")), str(batch.count("running")),
                              str(batch.count("failed")), _clock((batch.ended or now) - batch.started),
                              style="bold" if batch.ended is None else None)
            running = Table(box=None, pad_edge=False, show_header=False)
            running.add_column("host")
            running.add_column("task")
            running.add_column("for", justify="right")
            if self.batches and self.batches[-1].ended is None:
                for host, (task, since) in sorted(self.batches[-1].tasks.items()):
                    running.add_row(f"  {host}", task, _clock(now - since))
            return Group(header, table, running)
