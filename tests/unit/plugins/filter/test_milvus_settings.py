"""Unit tests for filter_plugins/milvus_settings.py (the milvus role's preflight checks).

These cases were bad-input runs of the milvus molecule scenario (test_role_runs.py's
test_bad_input_stops_in_preflight, test_render_methods.py's compose and package preflight cases);
the scenario keeps one run that proves the wiring (the run stops before any change, the failed
task's message names the variable and the host).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("milvus_settings", ROOT / "filter_plugins" / "milvus_settings.py")
milvus_settings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(milvus_settings)
FILTERS = milvus_settings.FilterModule().filters()
settings_errors = FILTERS["milvus_settings_errors"]
compose_errors = FILTERS["milvus_compose_errors"]
package_errors = FILTERS["milvus_package_errors"]

HOST = "milvus-1"
ROOT_PW, APP_PW, SECRET = "root-Secret-1", "app-Secret-1", 'render-Secret$1"q\\z'
INTERNAL = {"proxy_internal_port": 19559, "etcd_port": 2399, "etcd_peer_port": 2400}


def common(**overrides):
    base = {"root_password": ROOT_PW, "root_initial_password": "Milvus", "app_password": APP_PW,
            "app_user": "chatchat", "app_role": "chatchat_app", "smoke_collection": "chatfleet_smoke",
            "app_privileges": [["Global", "*", "CreateCollection"], ["Collection", "*", "*"]],
            "method": "pip", "port": 19560, "metrics_port": 9161, "pip_internal_ports": INTERNAL,
            "pip_index_url": "http://127.0.0.1:18080/repository/pypi-proxy/simple/"}
    base.update(overrides)
    return base


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


IMAGES = {"milvus": {"name": "milvusdb/milvus", "tag": "v2.3.5", "digest": digest("milvus")},
          "etcd": {"name": "quay.io/coreos/etcd", "tag": "v3.5.5", "digest": digest("etcd")},
          "minio": {"name": "minio/minio", "tag": "RELEASE.2023-03-20T20-16-18Z", "digest": digest("minio")}}


def compose(**overrides):
    base = {"compose_registry": "registry.lab.invalid:5000", "compose_images": IMAGES,
            "minio_access_key": "render-access", "minio_secret_key": SECRET,
            "compose_command": ["/usr/bin/docker", "compose"], "compose_dir": "/opt/milvus",
            "data_dir": "/srv/milvus"}
    base.update(overrides)
    return base


def package(**overrides):
    base = {"package_url": "http://127.0.0.1:18080/repository/raw-hosted/milvus/milvus_2.3.5-1_amd64.deb",
            "package_sha256": "a" * 64, "package_format": "deb", "minio_access_key": "render-access",
            "minio_secret_key": SECRET, "data_dir": "/srv/milvus", "systemd_dir": "/etc/systemd/system"}
    base.update(overrides)
    return base


def one(errors: list[str]) -> str:
    assert len(errors) == 1, errors
    assert f"host {HOST}" in errors[0]
    return errors[0]


# --------------------------------------------------------------------------- common settings

def test_good_settings_have_no_errors():
    assert settings_errors(common(), HOST) == []
    assert settings_errors(common(method="external", pip_internal_ports={"x": 19560}), HOST) == []


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"root_password": ""}, "milvus_root_password must be set to 8 to 256 characters"),
    ({"root_password": None}, "milvus_root_password must be set"),
    ({"root_password": "x" * 257}, "milvus_root_password must be set"),
    ({"root_password": "Milvus-Factory", "root_initial_password": "Milvus-Factory"}, "factory default 'Milvus-Factory'"),
    ({"app_password": "short"}, "milvus_app_password must be set"),
    ({"app_password": ROOT_PW}, "milvus_app_password must differ from milvus_root_password"),
    ({"app_user": "root"}, 'milvus_app_user ("root")'),
    ({"app_user": "chat-chat"}, 'milvus_app_user ("chat-chat")'),
    ({"app_user": "1chat"}, "milvus_app_user"),
    ({"app_user": "u" * 33}, "milvus_app_user"),
    ({"app_role": "app role"}, "milvus_app_role"),
    ({"smoke_collection": "smoke-test"}, "milvus_smoke_collection"),
    ({"app_privileges": [["Database", "*", "*"]]}, "milvus_app_privileges"),
    ({"app_privileges": []}, "milvus_app_privileges"),
    ({"app_privileges": [["Global", "*"]]}, "milvus_app_privileges"),
    ({"metrics_port": 19560}, "milvus_port and milvus_metrics_port are all 19560"),
    ({"metrics_port": 2399}, "milvus_metrics_port and milvus_pip_internal_ports.etcd_port"),
    ({"port": 0}, "between 1 and 65535: milvus_port"),
    ({"port": 70000}, "between 1 and 65535: milvus_port"),
    ({"metrics_port": "http"}, "milvus_metrics_port"),
    ({"pip_internal_ports": {**INTERNAL, "etcd_port": 99999}}, "milvus_pip_internal_ports.etcd_port"),
    ({"pip_index_url": "pypi.org/simple"}, "milvus_pip_index_url must be the mirror's PyPI simple index"),
])
def test_each_bad_setting_is_one_sentence_naming_the_variable_and_host(overrides, fragment):
    assert fragment in one(settings_errors(common(**overrides), HOST))


def test_the_factory_default_root_password_is_refused():
    errors = settings_errors(common(root_password="Milvus"), HOST)
    assert any("milvus_root_password must not be the factory default 'Milvus' (host milvus-1)" in e for e in errors)


def test_passwords_are_never_shown():
    errors = settings_errors(common(root_password="Milvus", app_password="Milvus"), HOST)
    assert errors and all("Milvus'" not in e.replace("factory default 'Milvus'", "") for e in errors)
    errors = settings_errors(common(app_password="tiny-pw"), HOST)
    assert "tiny-pw" not in " ".join(errors)


def test_internal_ports_count_only_for_the_pip_method():
    clash = {**INTERNAL, "etcd_port": 19560}
    assert settings_errors(common(pip_internal_ports=clash), HOST)
    assert settings_errors(common(method="compose", pip_internal_ports=clash), HOST) == []


def test_every_problem_is_reported_at_once():
    errors = settings_errors(common(root_password="", app_user="root", port=9161), HOST)
    assert len(errors) == 3


# --------------------------------------------------------------------------- compose method

def test_good_compose_settings_have_no_errors():
    assert compose_errors(compose(), HOST) == []
    assert compose_errors(compose(compose_command=["/usr/bin/podman-compose"]), HOST) == []


@pytest.mark.parametrize("service", ["etcd", "milvus", "minio"])
def test_compose_an_image_without_digest_names_it_and_how_to_read_it(service):
    images = {**IMAGES, service: {**IMAGES[service], "digest": ""}}
    text = one(compose_errors(compose(compose_images=images), HOST))
    assert f"milvus_compose_images.{service} must have a name, a tag and a digest" in text
    assert "docker buildx imagetools inspect" in text
    assert f"registry.lab.invalid:5000/{IMAGES[service]['name']}:{IMAGES[service]['tag']}" in text


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"compose_registry": "https://registry.lab"}, "milvus_compose_registry must be the mirror's docker registry"),
    ({"compose_registry": "registry.lab/"}, "milvus_compose_registry"),
    ({"compose_images": {"milvus": IMAGES["milvus"]}}, "milvus_compose_images must map exactly etcd, minio and milvus"),
    ({"compose_images": {**IMAGES, "milvus": {**IMAGES["milvus"], "digest": "sha256:ABC"}}}, "milvus_compose_images.milvus"),
    ({"compose_images": {**IMAGES, "etcd": {**IMAGES["etcd"], "tag": ""}}}, "milvus_compose_images.etcd"),
    ({"minio_secret_key": ""}, "milvus_minio_secret_key must be set"),
    ({"minio_secret_key": "minioadmin"}, "milvus_minio_secret_key must be set"),
    ({"minio_secret_key": "short"}, "milvus_minio_secret_key must be set"),
    ({"minio_secret_key": "render-access"}, "milvus_minio_secret_key must be set"),
    ({"minio_access_key": "a b"}, "milvus_minio_access_key"),
    ({"compose_command": "/usr/bin/docker compose"}, "milvus_compose_command must be a list"),
    ({"compose_command": ["docker", "compose"]}, "milvus_compose_command must be a list"),
    ({"compose_command": []}, "milvus_compose_command must be a list"),
    ({"compose_dir": "relative/dir"}, "milvus_compose_dir must be an absolute path"),
    ({"data_dir": "/srv/milvus data"}, "milvus_data_dir must be an absolute path"),
])
def test_each_bad_compose_setting_is_one_sentence(overrides, fragment):
    assert fragment in one(compose_errors(compose(**overrides), HOST))


def test_compose_secret_is_never_shown():
    for secret in ("short", SECRET):
        assert secret not in " ".join(compose_errors(compose(minio_secret_key=secret, compose_dir="x"), HOST))


# --------------------------------------------------------------------------- package method

def test_good_package_settings_have_no_errors():
    assert package_errors(package(), HOST) == []
    assert package_errors(package(package_format=""), HOST) == []


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"package_url": ""}, "needs milvus_package_url, the http(s) URL of the Milvus standalone .deb"),
    ({"package_url": "ftp://mirror/milvus.deb"}, "(got 'ftp://mirror/milvus.deb')"),
    ({"package_url": "http://mirror/milvus.rpm"}, "milvus_package_url"),
    ({"package_sha256": "abc"}, "milvus_package_sha256, its SHA-256 in 64 hex digits (got 'abc'"),
    ({"package_sha256": None}, "milvus_package_sha256"),
    ({"minio_secret_key": "minioadmin"}, "milvus_minio_secret_key must be set"),
    ({"minio_secret_key": "line-one\nline-two"}, "milvus_minio_secret_key must be set"),
    ({"systemd_dir": "/etc/systemd dir"}, "milvus_systemd_dir must be an absolute path"),
    ({"data_dir": "/srv/%i"}, "milvus_data_dir must be an absolute path"),
])
def test_each_bad_package_setting_is_one_sentence(overrides, fragment):
    assert fragment in one(package_errors(package(**overrides), HOST))


def test_the_package_format_follows_the_os():
    assert package_errors(package(package_format="rpm"), HOST)
    rpm = package(package_format="rpm", package_url="http://mirror/repo/milvus-2.3.5-1.x86_64.rpm")
    assert package_errors(rpm, HOST) == []
