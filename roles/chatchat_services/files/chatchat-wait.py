#!/usr/bin/env python3
"""Health gate of the chatchat units (installed by the chatfleet chatchat_services role).

  chatchat-wait UNIT URL METHOD TIMEOUT

Waits until URL answers HTTP 200 to METHOD. Fails at once, with the unit's last log lines, when the
unit has failed or stopped (a crash loop that hit its start limit), instead of waiting out the
timeout; fails with the same lines when the timeout passes. Python 3.6+, stdlib only; runs as root.
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


def main(argv):
    unit, url, method, timeout = argv[0], argv[1], argv[2].upper(), float(argv[3])
    started = time.monotonic()
    while True:
        if answers(url, method):
            print("%s answered %s %s after %.1f s" % (unit, method, url, time.monotonic() - started))
            return 0
        state = unit_state(unit)
        if state.get("ActiveState") in ("failed", "inactive"):
            print("%s is %s (%s, %s restarts) and %s does not answer; its last log lines:\n%s"
                  % (unit, state.get("ActiveState"), state.get("SubState"), state.get("NRestarts"), url, journal(unit)),
                  file=sys.stderr)
            return 1
        if time.monotonic() - started >= timeout:
            print("%s did not answer %s %s within %.0f s (chatchat_services_health_timeout); its last log lines:\n%s"
                  % (unit, method, url, timeout, journal(unit)), file=sys.stderr)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
