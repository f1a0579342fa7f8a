#!/usr/bin/env python3
"""ExecStartPre of the chatchat units (installed by the chatfleet chatchat_services role).

  chatchat-prestart [--wait-for URL [--timeout SECONDS]] HOST:PORT ...

Fails (exit 1, naming the port) when another process listens on one of the unit's ports, instead of
letting the service die later with "address already in use" (a POC startup.py killed with -9 leaves
its children holding the ports). The probe binds with SO_REUSEADDR, so sockets in TIME_WAIT from the
unit's own previous run do not count. With --wait-for, it then waits until URL answers HTTP 200 (a
worker waits for its controller, so that registering cannot fail at boot). Python 3.6+, stdlib only.
"""
import argparse
import socket
import sys
import time
import urllib.error
import urllib.request


def port_free(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def wait_for(url, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    parser.add_argument("--wait-for", metavar="URL")
    parser.add_argument("--timeout", type=float, default=150.0)
    args = parser.parse_args(argv)
    for address in args.addresses:
        host, _, port = address.rpartition(":")
        if not port_free(host.strip("[]"), int(port)):
            print("chatchat-prestart: port %s is in use by another process (ss -ltnp 'sport = :%s' names it): "
                  "stop it, or move this service to another port" % (port, port), file=sys.stderr)
            return 1
    if args.wait_for and not wait_for(args.wait_for, args.timeout):
        print("chatchat-prestart: %s did not answer within %.0f s" % (args.wait_for, args.timeout), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
