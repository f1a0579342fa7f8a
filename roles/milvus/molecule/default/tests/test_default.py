"""A converged pip-method Milvus: the unit, its user and hardening, auth, the app user, persistence."""
from __future__ import annotations

import json
import re

import pytest
from testlib import run_role

from conftest import APP_PASSWORD, APP_USER, DATA_DIR, METRICS_PORT, PORT, ROOT_PASSWORD, healthz, milvus_py, wait_healthy


@pytest.mark.security
def test_unit_runs_the_server_as_the_service_user(host):
    unit = host.service("milvus")
    assert unit.is_running and unit.is_enabled
    main_pid = host.check_output("systemctl show -p MainPID --value milvus")
    status = host.file(f"/proc/{main_pid}/status").content_string
    uids = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")][0]
    assert set(uids) == {str(host.user("milvus").uid)} and "0" not in uids
    # systemd supervises the server itself, not a wrapper process.
    assert host.file(f"/proc/{main_pid}/comm").content_string.strip() == "milvus"


@pytest.mark.security
def test_unit_hardening(host):
    props = host.check_output("systemctl show milvus -p User -p NoNewPrivileges -p ProtectSystem "
                              "-p ProtectHome -p PrivateTmp -p ReadWritePaths -p CapabilityBoundingSet")
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert values["User"] == "milvus"
    assert values["NoNewPrivileges"] == "yes"
    assert values["ProtectSystem"] == "strict"
    assert values["ProtectHome"] == "yes"
    assert values["PrivateTmp"] == "yes"
    assert values["ReadWritePaths"] == DATA_DIR
    assert values["CapabilityBoundingSet"] == ""


@pytest.mark.security
def test_security_exposure_is_low(host):
    """systemd-analyze security's overall exposure (0 = locked down, 10 = unprotected): 3.0 on the
    lab's node; the project's target is 5.0 or below, and the test fails above 4.0."""
    out = host.check_output("systemd-analyze security --no-pager milvus.service")
    score = float(re.search(r"Overall exposure level for milvus.service: ([0-9.]+)", out).group(1))
    print("systemd-analyze security milvus.service:", score)
    assert score <= 4.0, out


def test_unit_file_verifies(host):
    result = host.run("systemd-analyze verify /etc/systemd/system/milvus.service")
    assert result.rc == 0, result.stderr
    assert "milvus.service" not in result.stderr


def test_both_ports_listen(host):
    assert host.socket(f"tcp://{PORT}").is_listening
    assert host.socket(f"tcp://{METRICS_PORT}").is_listening


def test_healthz_answers_ok(host):
    assert healthz(host) == "OK"


@pytest.mark.security
def test_data_dir_belongs_to_the_service_user(host):
    data = host.file(DATA_DIR)
    assert data.user == "milvus" and data.mode == 0o750
    assert host.file(f"{DATA_DIR}/data/etcd.data").is_directory
    assert host.file(f"{DATA_DIR}/data/rocksmq").is_directory


@pytest.mark.security
def test_unauthenticated_client_is_refused(host):
    error = milvus_py(host, 'print(json.dumps(refused()))')
    assert error and "UNAUTHENTICATED" in error


@pytest.mark.security
def test_factory_root_password_is_refused_and_the_new_one_works(host):
    assert milvus_py(host, 'print(json.dumps(refused("root", "Milvus")))')
    assert milvus_py(host, f'print(json.dumps(refused("root", "{ROOT_PASSWORD}")))') is None


@pytest.mark.security
def test_app_user_has_the_app_role_and_no_admin_rights(host):
    result = milvus_py(host, f"""
        login("root", "root", "{ROOT_PASSWORD}")
        from pymilvus import Role
        role = Role("chatchat_app", using="root")
        grants = sorted([g.object, g.object_name, g.privilege] for g in role.list_grants().groups)
        login("app", "{APP_USER}", "{APP_PASSWORD}")
        try:
            utility.create_user("intruder", "intruder-Pw1", using="app")
            denied = None
        except Exception as exc:
            denied = str(exc)
        print(json.dumps({{"users": list(role.get_users()), "grants": grants, "denied": denied}}))
    """)
    assert result["users"] == [APP_USER]
    assert ["Collection", "*", "*"] in result["grants"] and len(result["grants"]) == 5
    assert result["denied"] and "permission deny" in result["denied"].lower()


def test_app_user_creates_and_searches_a_collection(host):
    hits = milvus_py(host, f"""
        login("app", "{APP_USER}", "{APP_PASSWORD}")
        c = fresh_collection("app", "kb_probe", [10, 20, 30], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
        c.create_index("vec", {{"index_type": "FLAT", "metric_type": "L2", "params": {{}}}})
        c.load()
        found = c.search([[0, 0.9, 0.1, 0]], "vec", {{"metric_type": "L2"}}, limit=2)[0].ids
        utility.drop_collection("kb_probe", using="app")
        print(json.dumps(list(found)))
    """)
    assert hits[0] == 20 and len(hits) == 2


@pytest.mark.fault
def test_flushed_rows_survive_a_sigkill_of_the_server(host):
    """Rows inserted and flushed, then the server is SIGKILLed (no shutdown of any kind):
    systemd starts it again (Restart=always) and every row is there."""
    inserted = milvus_py(host, f"""
        login("app", "{APP_USER}", "{APP_PASSWORD}")
        c = fresh_collection("app", "kb_persist", [1, 2, 3, 4], [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]])
        print(json.dumps(c.num_entities))
    """)
    assert inserted == 4
    before = host.check_output("systemctl show -p MainPID --value milvus")
    restarts = int(host.check_output("systemctl show -p NRestarts --value milvus"))
    host.run_expect([0], "systemctl kill --signal=SIGKILL milvus.service")
    # The killed process is gone, and systemd has started a new one.
    host.run_expect([0], f"timeout 60 sh -c 'while kill -0 {before} 2>/dev/null; do sleep 0.2; done'")
    host.run_expect([0], f"timeout 60 sh -c 'until [ \"$(systemctl show -p NRestarts --value milvus)\" -gt {restarts} ] "
                         "&& systemctl is-active -q milvus; do sleep 0.2; done'")
    seconds = wait_healthy(host)
    after = host.check_output("systemctl show -p MainPID --value milvus")
    assert after not in ("0", before)
    print(f"SIGKILL to healthy: {seconds:.1f} s")
    # Healthy is not yet loadable: until the killed process's sessions expire in etcd, a load is
    # refused ("unrecoverable error"); the rows must be there once it is accepted.
    found = milvus_py(host, f"""
        import time
        login("app", "{APP_USER}", "{APP_PASSWORD}")
        c = Collection("kb_persist", using="app")
        c.create_index("vec", {{"index_type": "FLAT", "metric_type": "L2", "params": {{}}}})
        started, errors = time.monotonic(), []
        while True:
            try:
                c.load(timeout=30)
                break
            except Exception as exc:
                errors.append(str(exc)[:200])
                if time.monotonic() - started > 180:
                    raise
                time.sleep(3)
        rows = sorted(r["pk"] for r in c.query("pk >= 0", output_fields=["pk"]))
        utility.drop_collection("kb_persist", using="app")
        print(json.dumps({{"rows": rows, "load_s": round(time.monotonic() - started, 1), "refused": errors[:1]}}))
    """)
    print(f"healthy to loadable: {found['load_s']} s, first refusal: {found['refused']}")
    assert found["rows"] == [1, 2, 3, 4]
    # The next run finds a healthy Milvus as it deployed it: nothing to change.
    again = run_role("milvus", gather_facts=True)
    assert again.rc == 0 and again.changed == 0, again


@pytest.mark.security
def test_settings_hold_no_secrets_and_the_explicit_ports(host):
    settings = json.loads(host.file("/etc/milvus/lite.json").content_string)
    assert settings["config"]["proxy_port"] == PORT and settings["metrics_port"] == METRICS_PORT
    assert settings["config"]["authorization_enabled"] is True
    for path in ("/etc/milvus/lite.json", "/etc/milvus/embed-etcd.yaml", "/etc/systemd/system/milvus.service"):
        content = host.file(path).content_string
        assert ROOT_PASSWORD not in content and APP_PASSWORD not in content
