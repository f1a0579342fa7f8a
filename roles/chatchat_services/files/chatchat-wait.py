#!/usr/bin/env python3
"""Health gate of the chatchat units (installed by the chatfleet chatchat_services role).

  chatchat-wait UNIT URL METHOD TIMEOUT [UNIT URL METHOD TIMEOUT ...]

For each unit in turn: waits until URL answers HTTP 200 to METHOD. Gives up on a unit at once, with
its last log lines, when it has failed or stopped (a crash loop that hit its start limit), instead of
waiting out the timeout; gives up with the same lines when the timeout passes. Every unit is waited
for (one task gates them all); the exit status is 1 when any did not answer. Python 3.6+, stdlib
only; runs as root.
"""
import subprocess
import sys
import time
import urllib.error
import urllib.request


def unit_state(unit):
    out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts", unit],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def answers(url, method):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def journal(unit):
    return subprocess.run(["journalctl", "-u", unit, "-n", "15", "--no-pager", "-o", "cat"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout


def wait(unit, url, method, timeout):
    started = time.monotonic()
    while True:
        if answers(url, method):
            print("%s answered %s %s after %.1f s" % (unit, method, url, time.monotonic() - started))
            return True
        state = unit_state(unit)
        if state.get("ActiveState") in ("failed", "inactive"):
            print("%s is %s (%s, %s restarts) and %s does not answer; its last log lines:\n%s"
                  % (unit, state.get("ActiveState"), state.get("SubState"), state.get("NRestarts"), url, journal(unit)),
                  file=sys.stderr)
            return False
        if time.monotonic() - started >= timeout:
            print("%s did not answer %s %s within %.0f s (chatchat_services_health_timeout); its last log lines:\n%s"
                  % (unit, method, url, timeout, journal(unit)), file=sys.stderr)
            return False
        time.sleep(1)


def main(argv):
    if not argv or len(argv) % 4:
        print(__doc__, file=sys.stderr)
        return 2
    groups = [argv[i:i + 4] for i in range(0, len(argv), 4)]
    answered = [wait(unit, url, method.upper(), float(timeout)) for unit, url, method, timeout in groups]
    return 0 if all(answered) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
