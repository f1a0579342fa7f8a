"""Shared values of the milvus scenario (molecule.yml) and a pymilvus runner on the node."""
from __future__ import annotations

import json
import textwrap
import time

NODE = "milvus-1"
PORT, METRICS_PORT = 19560, 9161
DATA_DIR = "/srv/milvus-data"
CLIENT_PYTHON = "/opt/chatfleet/milvus-client/bin/python"
ROOT_PASSWORD, APP_USER, APP_PASSWORD = "molecule-root-Pw1", "chatchat", "molecule-app-Pw1"

_PRELUDE = f"""
import json, sys
from pymilvus import connections, utility, Collection, CollectionSchema, FieldSchema, DataType
def login(alias, user="", password=""):
    kwargs = dict(user=user, password=password) if user else {{}}
    connections.connect(alias, host="127.0.0.1", port="{PORT}", timeout=10, **kwargs)
    utility.list_collections(using=alias, timeout=10)
    return alias
# A new collection `name` (pk INT64, vec FLOAT_VECTOR) holding the rows, flushed.
def fresh_collection(alias, name, ids, vectors):
    if utility.has_collection(name, using=alias):
        utility.drop_collection(name, using=alias)
    schema = CollectionSchema([FieldSchema("pk", DataType.INT64, is_primary=True),
                               FieldSchema("vec", DataType.FLOAT_VECTOR, dim=len(vectors[0]))])
    c = Collection(name, schema, using=alias)
    c.insert([ids, vectors])
    c.flush()
    return c
def refused(user="", password=""):
    try:
        login("probe", user, password)
    except Exception as exc:
        return str(exc)
    return None
"""


def milvus_py(host, code: str):
    """Run `code` (after _PRELUDE) with the role's client venv on the node; it prints one JSON value."""
    script = _PRELUDE + textwrap.dedent(code)
    # pymilvus 2.3 imports pkg_resources, whose deprecation warning would head every failure's stderr.
    result = host.run(f"PYTHONWARNINGS='ignore:pkg_resources is deprecated:UserWarning' "
                      f"{CLIENT_PYTHON} - <<'EOF'\n{script}\nEOF")
    assert result.rc == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def healthz(host) -> str:
    probe = host.run(f"{CLIENT_PYTHON} -c \"import urllib.request as u; "
                     f"print(u.urlopen('http://127.0.0.1:{METRICS_PORT}/healthz', timeout=3).read().decode())\"")
    return probe.stdout.strip() if probe.rc == 0 else f"unreachable: {probe.stderr.strip()[-200:]}"


def wait_healthy(host, timeout: float = 180) -> float:
    """Seconds until /healthz answers OK."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if healthz(host) == "OK":
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"Milvus not healthy after {timeout} s: {healthz(host)}")
