"""Start the Milvus standalone binary shipped in the `milvus` PyPI package (Milvus Lite).

The package's own `milvus-server` wrapper keeps the real server as a child process and,
on SIGINT, gives it one second before SIGKILL. Under systemd we want the server itself to
be the unit's main process, stopped with SIGTERM and a real grace period. So this launcher
uses the package's config renderer once (it writes <data>/configs/milvus.yaml and unpacks the
bundled libraries) and then exec()s the binary in its place.

Usage: milvus-lite-exec.py SETTINGS_JSON
SETTINGS_JSON: {"data_dir": ..., "metrics_port": 9091, "config": {template_key: value},
                "extra_config": {"dotted.key": value}}
"""
import json
import os
import socket
import sys

import milvus


class LiteConfig(milvus.MilvusServerConfig):
    """The package's config renderer, with a port check that a restart passes.

    The package probes each port by binding it without SO_REUSEADDR, which fails for a minute
    after a stop while the old connections sit in TIME_WAIT. With SO_REUSEADDR the probe still
    fails on a port another process listens on, which is the case it is there for.
    """

    def try_bind_port(self, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            return None


def main(settings_path):
    with open(settings_path, encoding="utf-8") as handle:
        settings = json.load(handle)

    config = LiteConfig(data_dir=settings["data_dir"])
    unknown = sorted(set(settings["config"]) - set(config.configurable_items))
    if unknown:
        sys.exit("milvus-lite-exec: unknown Milvus Lite settings: %s" % ", ".join(unknown))
    for key, value in settings["config"].items():
        expected = config.get_type(key)
        if not isinstance(value, expected):
            sys.exit("milvus-lite-exec: %s must be %s, got %r" % (key, expected.__name__, value))
        config.set(key, value)
    # Ports are read from the server options: with every port given, resolve() fails on a
    # port in use instead of silently moving the service to another port.
    config.update(**settings["config"])
    for key, value in settings.get("extra_config", {}).items():
        config.set(key, value)
    try:
        config.resolve()
    except RuntimeError as exc:
        sys.exit("milvus-lite-exec: %s" % exc)

    data_dir = config.base_data_dir
    milvus._initialize_data_files(data_dir)  # pylint: disable=protected-access
    bin_dir = os.path.join(data_dir, "bin")
    env = dict(os.environ)
    env.update({
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(settings["metrics_port"]),
        "MILVUS_RUN_DIR": os.path.join(data_dir, "run"),
        "LD_LIBRARY_PATH": bin_dir,
    })
    os.chdir(data_dir)
    executable = os.path.join(bin_dir, "milvus")
    os.execve(executable, [executable, "run", "standalone"], env)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
