"""Reruns of the role on the converged node: idempotence, check mode, external, and bad input."""
from __future__ import annotations

import pytest
from testlib import docker_exec, run_role, task_results

from conftest import APP_PASSWORD, APP_USER, METRICS_PORT, NODE, ROOT_PASSWORD, healthz, milvus_py, wait_healthy


@pytest.fixture(scope="module", autouse=True)
def sentinel(host):
    """A knowledge base's worth of data that every failed or check-mode run must leave intact."""
    rows = milvus_py(host, f"""
        login("app", "{APP_USER}", "{APP_PASSWORD}")
        c = fresh_collection("app", "kb_sentinel", [7, 8, 9], [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
        print(json.dumps(c.num_entities))
    """)
    assert rows == 3
    yield
    milvus_py(host, f"""
        login("app", "{APP_USER}", "{APP_PASSWORD}")
        utility.drop_collection("kb_sentinel", using="app")
        print(json.dumps(True))
    """)


def _sentinel_rows(host, timeout: int = 0) -> int:
    """The sentinel collection's row count; retried for up to `timeout` s while Milvus still refuses
    (healthy is not yet serving: after a freeze or a restart its sessions in etcd must expire first)."""
    return milvus_py(host, f"""
        import time
        started = time.monotonic()
        while True:
            try:
                login("root", "root", "{ROOT_PASSWORD}")
                rows = Collection("kb_sentinel", using="root").num_entities
                break
            except Exception:
                if time.monotonic() - started > {timeout}:
                    raise
                connections.disconnect("root")
                time.sleep(3)
        print(json.dumps(rows))
    """)


def _main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value milvus")


SMOKE_RECORD = "/etc/milvus/smoke-passed.json"


def _smoke_record(host) -> str:
    """The gate's record of the last passed smoke test: rewritten whenever the smoke test runs."""
    return host.check_output(f"stat -c '%Y.%Z %i' {SMOKE_RECORD}")


def _state(host) -> dict:
    """What a stopped run must leave as it was: the server process, its files, its data, its logins
    (one client call for the last three: each start of pymilvus costs seconds)."""
    logins = milvus_py(host, f"""
        login("root", "root", "{ROOT_PASSWORD}")
        print(json.dumps({{"app_login": refused("{APP_USER}", "{APP_PASSWORD}"),
                          "root_login": refused("root", "{ROOT_PASSWORD}"),
                          "sentinel_rows": Collection("kb_sentinel", using="root").num_entities}}))
    """)
    return {
        "pid": _main_pid(host),
        "files": host.check_output("find /etc/milvus /etc/systemd/system/milvus.service -type f -exec sha256sum {} + "
                                   "| sort"),
        "healthz": healthz(host),
        **logins,
    }


@pytest.mark.idempotence
def test_second_run_changes_nothing_and_skips_the_smoke_test(host):
    """Nothing changed, so the gate checks health and the logins but not the 30 s smoke test."""
    before, record = _main_pid(host), _smoke_record(host)
    run = run_role("milvus", gather_facts=True)
    assert run.rc == 0, run
    assert run.changed == 0, run
    assert task_results(run, "Wait for Milvus to report healthy") == ["ok"], run
    assert task_results(run, "Enforce authorization") == ["ok"], run
    assert task_results(run, "Smoke test as the application user") == ["skipping"], run
    assert _main_pid(host) == before
    assert _smoke_record(host) == record


@pytest.mark.check_mode
def test_check_mode_changes_nothing(host):
    state, record = _state(host), _smoke_record(host)
    run = run_role("milvus", "--check", "--diff", "-v", gather_facts=True)
    assert run.rc == 0, run
    assert run.changed == 0, run
    assert _state(host) == state
    assert _smoke_record(host) == record


def test_external_method_checks_the_running_milvus(host):
    """The external method against this node's Milvus: gates, secures and smokes; deploys nothing."""
    state = _state(host)
    run = run_role("milvus", gather_facts=True, extra_vars={
        "milvus_method": "external", "milvus_external_host": "127.0.0.1",
        "milvus_external_healthz_url": f"http://127.0.0.1:{METRICS_PORT}/healthz"})
    assert run.rc == 0, run
    assert run.changed == 0, run
    assert task_results(run, "Deploy Milvus (external)") == ["skipping"], run
    assert task_results(run, "Wait for Milvus to report healthy") == ["ok"], run
    # An external Milvus is someone else's: the role smoke-tests it on every run.
    assert task_results(run, "Smoke test as the application user") == ["ok"], run
    assert _state(host) == state


@pytest.mark.bad_input
def test_bad_settings_stop_in_preflight_naming_the_variable_and_host(host):
    """The wiring of the settings check (filter_plugins/milvus_settings.py; every rule is unit-tested
    in tests/unit/plugins/filter/test_milvus_settings.py)."""
    state = _state(host)
    run = run_role("milvus", gather_facts=True, extra_vars={"milvus_app_user": "root"})
    assert run.rc != 0
    failure = run.failure(NODE)
    assert failure["task"].endswith("Check the settings"), failure
    assert 'milvus_app_user ("root") must start with a letter' in failure["msg"], failure
    assert f"host {NODE}" in failure["msg"], failure
    assert run.changed == 0, run
    assert _state(host) == state


@pytest.mark.bad_input
def test_credentials_that_milvus_refuses_stop_the_run_and_change_nothing(host):
    """The live credential checks (milvus_access): a wrong root password, then an application
    password that no longer logs in (Milvus 2.3 sets a password only given the old one)."""
    state = _state(host)
    run = run_role("milvus", gather_facts=True, extra_vars={"milvus_root_password": "not-the-root-Pw1"})
    assert run.rc != 0
    failure = run.failure(NODE)
    assert "milvus_root_password is wrong" in failure["msg"] and NODE in failure["msg"], failure
    assert "not-the-root-Pw1" not in run.output
    assert run.changed == 0, run
    assert _state(host) == state

    run = run_role("milvus", gather_facts=True, extra_vars={"milvus_app_password": "another-app-Pw2"})
    assert run.rc != 0
    failure = run.failure(NODE)
    assert f"refuses {APP_USER} with milvus_app_password" in failure["msg"] and NODE in failure["msg"], failure
    assert "another-app-Pw2" not in run.output
    assert run.changed == 0, run
    assert _state(host) == state


@pytest.mark.fault
def test_a_milvus_that_never_gets_healthy_stops_the_gate_then_the_next_run_recovers(host):
    """The server hangs (SIGSTOP: its ports stay open, /healthz never answers): the gate gives up
    after milvus_health_timeout with a message that says where to look, nothing after it runs,
    and once the server is back the data is there and the next run changes nothing."""
    docker_exec(NODE, "systemctl", "kill", "--signal=SIGSTOP", "milvus.service")
    try:
        run = run_role("milvus", gather_facts=True, extra_vars={"milvus_health_timeout": 3})
    finally:
        docker_exec(NODE, "systemctl", "kill", "--signal=SIGCONT", "milvus.service")
    assert run.rc != 0
    failure = run.failure(NODE)
    assert "did not answer OK within milvus_health_timeout (3 s)" in failure["msg"], failure
    assert f"journalctl -u milvus` on {NODE}" in failure["msg"], failure
    assert task_results(run, "Enforce authorization") == [], run
    assert task_results(run, "Smoke test as the application user") == [], run
    assert run.changed == 0, run
    # Frozen for a while, the server may lose its etcd session and be restarted by systemd:
    # either way it comes back with its data.
    wait_healthy(host, timeout=240)
    assert _sentinel_rows(host, timeout=180) == 3
    again = run_role("milvus", gather_facts=True)
    assert again.rc == 0 and again.changed == 0, again


@pytest.mark.security
def test_a_verbose_run_never_prints_the_passwords(host):
    """-vvv shows every module's arguments and results: the passwords must appear in none of them.
    milvus_smoke `always` makes the smoke test (which logs in as the application user) run too."""
    record = _smoke_record(host)
    run = run_role("milvus", "-vvv", gather_facts=True, extra_vars={"milvus_smoke": "always"})
    assert run.rc == 0, run
    # The tasks that handle the secrets did run.
    assert task_results(run, "Enforce authorization") == ["ok"], run
    assert task_results(run, "Smoke test as the application user") == ["ok"], run
    assert _smoke_record(host) != record  # forgotten before the forced test, written after it passed
    for secret in (ROOT_PASSWORD, APP_PASSWORD):
        assert secret not in run.output
