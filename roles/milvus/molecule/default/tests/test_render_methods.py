"""The compose and package methods, which cannot pull images or packages here: what they render.

Each method's render-only entry point (tasks_from compose_files.yml / package_files.yml) writes
into a scratch directory on the node (never /etc/systemd/system, where the scenario's pip unit
lives). The checks use real tools: docker-compose's schema check on the test host, systemd's own
parsers (systemd-analyze verify, EnvironmentFile= through systemd-run) on the node and the host.

The registry and the digests below are inputs for rendering only: no registry exists here.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from testlib import docker_exec, run_role

COMPOSE_DIR = "/tmp/render-compose"
PACKAGE_DIR = "/tmp/render-package"
DATA_DIR = "/srv/render-milvus-data"
PORT, METRICS_PORT = 19570, 9171
REGISTRY = "registry.lab.invalid:5000"
# `$1` is invalid compose interpolation and `$`, `"` and `\` need quoting in an EnvironmentFile:
# the secret must reach compose and systemd unchanged.
SECRET = 'render-Secret$1"q\\z'
IMAGES = {
    service: {"name": name, "tag": tag, "digest": "sha256:" + hashlib.sha256(f"{name}:{tag}".encode()).hexdigest()}
    for service, name, tag in [("milvus", "milvusdb/milvus", "v2.3.5"), ("etcd", "quay.io/coreos/etcd", "v3.5.5"),
                               ("minio", "minio/minio", "RELEASE.2023-03-20T20-16-18Z")]
}
COMMON = {"milvus_data_dir": DATA_DIR, "milvus_port": PORT, "milvus_metrics_port": METRICS_PORT,
          "milvus_minio_access_key": "render-access", "milvus_minio_secret_key": SECRET}
COMPOSE_VARS = {**COMMON, "milvus_compose_dir": COMPOSE_DIR, "milvus_systemd_dir": f"{COMPOSE_DIR}/systemd",
                "milvus_compose_registry": REGISTRY, "milvus_compose_images": IMAGES}
PACKAGE_VARS = {**COMMON, "milvus_systemd_dir": PACKAGE_DIR,
                "milvus_package_url": "http://127.0.0.1:18080/repository/raw-hosted/milvus/milvus_2.3.5-1_amd64.deb",
                "milvus_package_sha256": hashlib.sha256(b"milvus_2.3.5-1_amd64.deb").hexdigest()}

# What systemd-analyze verify reports inside the node for the compose unit because docker is not
# installed there (the lab's apt mirror has no docker.io); the host, which has docker.io, must
# report nothing at all.
DOCKER_ABSENT = re.compile(r"Unit docker\.service not found|Command /usr/bin/docker is not executable")


@pytest.fixture(scope="module")
def node(host) -> str:
    return host.backend.get_hostname()


def sh(node: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    return docker_exec(node, "sh", "-c", command, check=check)


def read(node: str, path: str) -> str:
    return sh(node, f"cat {path}").stdout


def unit_values(text: str) -> dict[str, list[str]]:
    """Directive -> values of a unit file or drop-in, in order (sections merged)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def systemd_environment_file(node: str, path: str) -> dict[str, str]:
    """The environment systemd itself builds from an EnvironmentFile= (a transient unit runs env)."""
    out = sh(node, f"systemd-run --quiet --wait --pipe --collect -p EnvironmentFile={path} /usr/bin/env").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _render(node, scratch: str, tasks_from: str, extra_vars: dict):
    """Run a render-only entry point into a scratch dir, removed before and after."""
    sh(node, f"rm -rf {scratch}")
    result = run_role("milvus", hosts=node, tasks_from=tasks_from, extra_vars=extra_vars)
    assert result.rc == 0, result
    yield result
    sh(node, f"rm -rf {scratch}")


@pytest.fixture(scope="module")
def compose_render(node):
    yield from _render(node, COMPOSE_DIR, "compose_files.yml", COMPOSE_VARS)


@pytest.fixture(scope="module")
def compose_file(node, compose_render, tmp_path_factory) -> Path:
    """The rendered compose file, copied to the test host (the node's /tmp is a tmpfs, out of docker cp's reach)."""
    path = tmp_path_factory.mktemp("compose") / "docker-compose.yml"
    path.write_text(read(node, f"{COMPOSE_DIR}/docker-compose.yml"))
    return path


@pytest.fixture(scope="module")
def compose(compose_file) -> dict:
    return yaml.safe_load(compose_file.read_text())


@pytest.fixture(scope="module")
def compose_unit(node, compose_render) -> str:
    return read(node, f"{COMPOSE_DIR}/systemd/milvus.service")


# --------------------------------------------------------------------------- compose method

def test_compose_render_changes_only_the_scratch_dir(node, compose_render):
    assert compose_render.failed == 0 and compose_render.changed >= 1, compose_render.recap
    files = sh(node, f"find {COMPOSE_DIR} -type f | sort").stdout.split()
    assert files == [f"{COMPOSE_DIR}/docker-compose.yml", f"{COMPOSE_DIR}/systemd/milvus.service"]
    # Render only: nothing pulled, started or created outside the scratch dir.
    assert sh(node, f"test -e {DATA_DIR}", check=False).returncode != 0
    assert "render-access" not in sh(node, "grep -rl render-access /etc/systemd 2>/dev/null || true").stdout


def test_compose_config_accepts_the_file(compose_file):
    assert shutil.which("docker-compose"), "docker-compose (lab/labctl.py HOST_PACKAGES) is not on the test host"
    check = subprocess.run(["docker-compose", "-f", str(compose_file), "config", "--quiet"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    # A `$` left unescaped would be interpolated (a warning) or rejected.
    assert check.stderr.strip() == ""


def test_compose_images_are_pinned_by_tag_and_digest(compose):
    assert set(compose["services"]) == {"etcd", "minio", "milvus"}
    for service, image in IMAGES.items():
        assert compose["services"][service]["image"] == f"{REGISTRY}/{image['name']}:{image['tag']}@{image['digest']}"


def test_compose_publishes_only_milvus_ports(compose):
    services = compose["services"]
    assert services["milvus"]["ports"] == [f"{PORT}:19530", f"{METRICS_PORT}:9091"]
    assert "ports" not in services["etcd"] and "ports" not in services["minio"]


def test_compose_auth_and_minio_credentials(compose):
    milvus, minio = compose["services"]["milvus"]["environment"], compose["services"]["minio"]["environment"]
    assert milvus["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    # `$$` is compose's escape for a literal `$`.
    assert milvus["MINIO_SECRETACCESSKEY"] == minio["MINIO_ROOT_PASSWORD"] == SECRET.replace("$", "$$")
    assert milvus["MINIO_ACCESSKEYID"] == minio["MINIO_ROOT_USER"] == "render-access"
    assert milvus["ETCD_ENDPOINTS"] == "etcd:2379" and milvus["MINIO_ADDRESS"] == "minio:9000"


def test_compose_data_in_bind_mounts_under_the_data_dir(compose):
    assert "volumes" not in compose  # no named volumes
    for service, target in [("etcd", "/etcd"), ("minio", "/minio_data"), ("milvus", "/var/lib/milvus")]:
        mounts = compose["services"][service]["volumes"]
        assert mounts == [{"type": "bind", "source": f"{DATA_DIR}/{service}", "target": target}], service


def test_compose_health_gates_and_restart_policy(compose):
    services = compose["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["restart"] in ("always", "unless-stopped", "on-failure"), name
    assert "9091/healthz" in " ".join(services["milvus"]["healthcheck"]["test"])
    assert services["milvus"]["healthcheck"]["start_period"] == "90s"
    assert services["milvus"]["depends_on"] == {"etcd": {"condition": "service_healthy"},
                                                "minio": {"condition": "service_healthy"}}


@pytest.mark.security
def test_compose_file_is_root_only(node, compose_render):
    assert sh(node, f"stat -c '%a %U %G' {COMPOSE_DIR}/docker-compose.yml").stdout.split() == ["600", "root", "root"]


def test_compose_unit_verifies_on_a_host_with_docker(compose_unit, tmp_path):
    """The test host has docker.io (docker.service, /usr/bin/docker): systemd-analyze must say nothing."""
    unit = tmp_path / "milvus.service"
    unit.write_text(compose_unit)
    check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and (check.stdout + check.stderr).strip() == "", check.stdout + check.stderr


def test_compose_unit_parses_on_the_node(node, compose_render):
    """On the node every directive parses; the only complaints are about docker, which it lacks."""
    check = sh(node, f"systemd-analyze verify {COMPOSE_DIR}/systemd/milvus.service 2>&1", check=False)
    lines = [line for line in check.stdout.splitlines() if line.strip()]
    assert [line for line in lines if not DOCKER_ABSENT.search(line)] == [], check.stdout


def test_compose_unit_runs_compose_in_the_foreground_and_keeps_volumes(compose_unit):
    values = unit_values(compose_unit)
    argv = ["/usr/bin/docker", "compose", "-p", "milvus", "-f", f"{COMPOSE_DIR}/docker-compose.yml"]
    start, stop = values["ExecStart"][0].split(), values["ExecStop"][0].split()
    assert start[:len(argv)] == argv and stop[:len(argv)] == argv
    assert start[len(argv)] == "up" and not {"-d", "--detach"} & set(start)
    assert "--no-build" in start and start[start.index("--pull") + 1] == "never"
    assert stop[len(argv)] == "stop"
    commands = " ".join(v for k, vs in values.items() if k.startswith("Exec") for v in vs)
    assert not re.search(r"\b(down|rm)\b|--volumes|\s-v\b", commands), commands
    assert values["Requires"] == ["docker.service"] and "docker.service" in values["After"][0].split()
    # compose stops a hung Milvus (SIGKILL after `stop -t`) before systemd's own limit.
    assert int(values["TimeoutStopSec"][0]) > int(stop[stop.index("-t") + 1])
    assert int(values["TimeoutStartSec"][0]) >= 90
    assert values["Restart"] == ["on-failure"]


@pytest.mark.idempotence
def test_compose_second_render_changes_nothing(node, compose_render):
    result = run_role("milvus", hosts=node, tasks_from="compose_files.yml", extra_vars=COMPOSE_VARS)
    assert result.rc == 0, result
    assert result.changed == 0, result.recap


# The compose and package methods' input rules (image digests, minio secret, URL, SHA-256, paths)
# are unit-tested in tests/unit/plugins/filter/test_milvus_settings.py; the runs here prove the
# wiring: good settings pass (test_package_preflight_accepts_good_input) and a node without the
# compose command stops before any change, naming the variable and the host.

def node_state(node: str) -> str:
    """What a preflight run must leave as it was: the node's Milvus, its units and the scratch dirs."""
    return sh(node, "systemctl show -p MainPID --value milvus; "
                    "find /etc/milvus /etc/systemd/system /tmp/render-* -type f 2>/dev/null -exec sha256sum {} + | sort").stdout


@pytest.mark.bad_input
def test_compose_preflight_requires_the_compose_command(node):
    """Good settings pass the settings check (the filter) up to the compose command, which the
    node does not have."""
    before = node_state(node)
    result = run_role("milvus", hosts=node, tasks_from="preflight_compose.yml", extra_vars=COMPOSE_VARS)
    assert result.rc != 0 and result.changed == 0, result
    failure = result.failure(node)
    assert f"/usr/bin/docker is not installed on host {node} (milvus_compose_command is" in failure["msg"], failure
    assert SECRET not in result.output
    assert node_state(node) == before


# --------------------------------------------------------------------------- package method

@pytest.fixture(scope="module")
def package_render(node):
    yield from _render(node, PACKAGE_DIR, "package_files.yml", PACKAGE_VARS)


@pytest.fixture(scope="module")
def dropin(node, package_render) -> dict[str, list[str]]:
    return unit_values(read(node, f"{PACKAGE_DIR}/milvus.service.d/chatfleet.conf"))


def test_package_render_writes_only_the_dropins(node, package_render):
    assert package_render.failed == 0 and package_render.changed >= 1, package_render.recap
    files = sh(node, f"find {PACKAGE_DIR} -type f | sort").stdout.split()
    assert files == sorted(f"{PACKAGE_DIR}/{unit}.service.d/{name}" for unit in ("milvus", "milvus-minio")
                           for name in ("chatfleet.conf", "chatfleet.env"))
    # Render only: no download, no package, no user change, no data dir.
    assert sh(node, "test -e /var/cache/chatfleet/milvus", check=False).returncode != 0
    assert sh(node, f"test -e {DATA_DIR}", check=False).returncode != 0


def test_package_dropin_verifies_on_the_nodes_milvus_unit(node, package_render):
    """A drop-in is checked merged onto a unit: the node's real milvus.service (the scenario's pip
    method), copied next to the rendered milvus.service.d/, so systemd-analyze loads both."""
    fragment = sh(node, "systemctl show -P FragmentPath milvus.service").stdout.strip()
    assert fragment, "the scenario's milvus.service is not installed on the node"
    sh(node, f"cp {fragment} {PACKAGE_DIR}/milvus.service")
    try:
        check = sh(node, f"systemd-analyze verify {PACKAGE_DIR}/milvus.service 2>&1", check=False)
        assert check.returncode == 0 and check.stdout.strip() == "", check.stdout
        # The same check sees a broken drop-in: the rendered one was really loaded.
        sh(node, f"cp -r {PACKAGE_DIR} {PACKAGE_DIR}-control && "
                 f"echo 'Restart=sometimes' >> {PACKAGE_DIR}-control/milvus.service.d/chatfleet.conf")
        control = sh(node, f"systemd-analyze verify {PACKAGE_DIR}-control/milvus.service 2>&1", check=False)
        assert "chatfleet.conf" in control.stdout, control.stdout
    finally:
        sh(node, f"rm -rf {PACKAGE_DIR}/milvus.service {PACKAGE_DIR}-control")


def test_package_dropin_sets_auth_ports_and_storage(dropin):
    env = dict(value.split("=", 1) for value in dropin["Environment"])
    assert env["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    assert env["PROXY_PORT"] == str(PORT) and env["METRICS_PORT"] == str(METRICS_PORT)
    for key in ("LOCALSTORAGE_PATH", "ROCKSMQ_PATH"):
        assert env[key].startswith(f"{DATA_DIR}/"), key
    assert dropin["User"] == ["milvus"]
    # The secret is not in Environment= (systemctl show prints those to any user).
    assert not any("SECRET" in value or SECRET in value for value in dropin["Environment"])


def test_package_dropin_restart_limits_and_ordering(dropin):
    assert dropin["Restart"] == ["on-failure"]
    assert int(dropin["StartLimitBurst"][0]) >= 1 and int(dropin["StartLimitIntervalSec"][0]) > 0
    assert {"milvus-etcd.service", "milvus-minio.service"} <= set(dropin["After"][0].split())
    assert int(dropin["TimeoutStopSec"][0]) > 0


def test_package_credentials_reach_systemd_unchanged(node, package_render, dropin):
    """systemd itself parses the root-only credential files that the drop-ins load."""
    minio_dropin = unit_values(read(node, f"{PACKAGE_DIR}/milvus-minio.service.d/chatfleet.conf"))
    files = {"milvus": dropin["EnvironmentFile"][0], "minio": minio_dropin["EnvironmentFile"][0]}
    assert files == {"milvus": f"{PACKAGE_DIR}/milvus.service.d/chatfleet.env",
                     "minio": f"{PACKAGE_DIR}/milvus-minio.service.d/chatfleet.env"}
    for path in files.values():
        assert sh(node, f"stat -c '%a %U %G' {path}").stdout.split() == ["600", "root", "root"]
    milvus_env, minio_env = (systemd_environment_file(node, path) for path in files.values())
    assert milvus_env["MINIO_ACCESSKEYID"] == minio_env["MINIO_ROOT_USER"] == "render-access"
    assert milvus_env["MINIO_SECRETACCESSKEY"] == minio_env["MINIO_ROOT_PASSWORD"] == SECRET


@pytest.mark.idempotence
def test_package_second_render_changes_nothing(node, package_render):
    result = run_role("milvus", hosts=node, tasks_from="package_files.yml", extra_vars=PACKAGE_VARS)
    assert result.rc == 0, result
    assert result.changed == 0, result.recap
    assert SECRET not in result.output


def test_package_preflight_accepts_good_input(node):
    result = run_role("milvus", hosts=node, tasks_from="preflight_package.yml", extra_vars=PACKAGE_VARS)
    assert result.rc == 0 and result.changed == 0, result
