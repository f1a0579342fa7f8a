"""Reruns of the role on the converged node: idempotence, check mode, external, and bad input."""
from __future__ import annotations

import pytest
from testlib import docker_exec, run_role

from conftest import APP_PASSWORD, APP_USER, METRICS_PORT, NODE, PORT, ROOT_PASSWORD, healthz, milvus_py, wait_healthy


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


def _sentinel_rows(host) -> int:
    return milvus_py(host, f"""
        login("root", "root", "{ROOT_PASSWORD}")
        print(json.dumps(Collection("kb_sentinel", using="root").num_entities))
    """)


def _main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value milvus")


@pytest.mark.idempotence
def test_second_run_changes_nothing(host):
    before = _main_pid(host)
    run = run_role("milvus", gather_facts=True)
    assert run.rc == 0, run
    assert run.changed == 0, run
    assert "Smoke test as the application user" in run.output
    assert _main_pid(host) == before


@pytest.mark.check_mode
def test_check_mode_changes_nothing(host):
    run = run_role("milvus", "--check", "--diff", "-v", gather_facts=True)
    assert run.rc == 0, run
    assert run.changed == 0, run
    assert "smoke test skipped in check mode" in run.output
    assert _sentinel_rows(host) == 3


def test_external_method_checks_the_running_milvus(host):
    """The external method against this node's Milvus: gates, secures and smokes; deploys nothing."""
    run = run_role("milvus", gather_facts=True, extra_vars={
        "milvus_method": "external", "milvus_external_host": "127.0.0.1",
        "milvus_external_healthz_url": f"http://127.0.0.1:{METRICS_PORT}/healthz"})
    assert run.rc == 0, run
    assert run.changed == 0, run
    assert "Deploy Milvus" not in run.output or "skipping" in run.output


def _assert_unchanged(host, pid: str) -> None:
    assert _main_pid(host) == pid
    assert healthz(host) == "OK"
    assert milvus_py(host, f'print(json.dumps(refused("{APP_USER}", "{APP_PASSWORD}")))') is None
    assert _sentinel_rows(host) == 3


@pytest.mark.bad_input
def test_wrong_root_password_fails_clearly_and_changes_nothing(host):
    pid = _main_pid(host)
    run = run_role("milvus", gather_facts=True, extra_vars={"milvus_root_password": "not-the-root-Pw1"})
    assert run.rc != 0
    assert "milvus_root_password is wrong" in run.flat
    assert run.changed == 0, run
    # The real root password still works: nothing was reset.
    assert milvus_py(host, f'print(json.dumps(refused("root", "{ROOT_PASSWORD}")))') is None
    _assert_unchanged(host, pid)


@pytest.mark.bad_input
def test_port_clash_fails_in_preflight(host):
    pid = _main_pid(host)
    taken = 19599
    docker_exec(NODE, "systemd-run", "--unit=port-squatter", "python3", "-m", "http.server", str(taken),
                "--bind", "127.0.0.1")
    try:
        host.run_expect([0], f"timeout 10 sh -c 'until ss -Hltn | grep -q :{taken}; do sleep 0.2; done'")
        run = run_role("milvus", gather_facts=True, extra_vars={"milvus_metrics_port": taken})
    finally:
        docker_exec(NODE, "systemctl", "stop", "port-squatter", check=False)
    assert run.rc != 0
    assert f"port {taken} is in use" in run.flat and "milvus_metrics_port" in run.flat
    assert run.changed == 0, run
    _assert_unchanged(host, pid)


@pytest.mark.bad_input
def test_unknown_method_is_refused_by_the_argument_spec(host):
    run = run_role("milvus", gather_facts=True, extra_vars={"milvus_method": "helm"})
    assert run.rc != 0
    assert "milvus_method" in run.flat and "helm" in run.flat
    assert run.changed == 0, run


@pytest.mark.bad_input
def test_unreachable_external_endpoint_fails_before_any_change(host):
    run = run_role("milvus", gather_facts=True, extra_vars={
        "milvus_method": "external", "milvus_external_host": "127.0.0.1", "milvus_port": 1})
    assert run.rc != 0
    assert "does not accept connections" in run.flat and "milvus_external_host" in run.flat
    assert run.changed == 0, run


@pytest.mark.parametrize("extra_vars, named", [
    ({"milvus_root_password": ""}, "milvus_root_password"),
    ({"milvus_root_password": "Milvus"}, "factory default"),
    ({"milvus_app_password": "short"}, "milvus_app_password"),
    ({"milvus_app_user": "root"}, "milvus_app_user"),
    ({"milvus_app_user": "chat-chat"}, "milvus_app_user"),
    ({"milvus_port": 9161}, "must be distinct"),
    ({"milvus_app_privileges": [["Database", "*", "*"]]}, "milvus_app_privileges"),
])
@pytest.mark.bad_input
def test_bad_input_stops_in_preflight(host, extra_vars, named):
    pid = _main_pid(host)
    run = run_role("milvus", gather_facts=True, extra_vars=extra_vars)
    assert run.rc != 0
    assert named in run.flat
    assert run.changed == 0, run
    _assert_unchanged(host, pid)


@pytest.mark.bad_input
def test_an_app_password_that_no_longer_logs_in_fails_and_changes_nothing(host):
    pid = _main_pid(host)
    run = run_role("milvus", gather_facts=True, extra_vars={"milvus_app_password": "another-app-Pw2"})
    assert run.rc != 0
    assert "refuses chatchat with milvus_app_password" in run.flat
    assert run.changed == 0, run
    _assert_unchanged(host, pid)


@pytest.mark.fault
def test_a_milvus_that_never_gets_healthy_stops_the_gate_then_the_next_run_recovers(host):
    """The server hangs (SIGSTOP: its ports stay open, /healthz never answers): the gate gives up
    after milvus_health_timeout with a message that says where to look, nothing after it runs,
    and once the server is back the data is there and the next run changes nothing."""
    docker_exec(NODE, "systemctl", "kill", "--signal=SIGSTOP", "milvus.service")
    try:
        run = run_role("milvus", gather_facts=True, extra_vars={"milvus_health_timeout": 9})
    finally:
        docker_exec(NODE, "systemctl", "kill", "--signal=SIGCONT", "milvus.service")
    assert run.rc != 0
    assert "did not answer OK within milvus_health_timeout (9 s)" in run.flat, run
    assert "journalctl -u milvus" in run.flat
    assert "Smoke test as the application user" not in run.output
    assert run.changed == 0, run
    # Frozen for about half a minute, the server may lose its etcd session and be restarted by
    # systemd: either way it comes back with its data.
    wait_healthy(host, timeout=240)
    assert _sentinel_rows(host) == 3
    again = run_role("milvus", gather_facts=True)
    assert again.rc == 0 and again.changed == 0, again


@pytest.mark.security
def test_a_verbose_run_never_prints_the_passwords(host):
    """-vvv shows every module's arguments and results: the passwords must appear in none of them."""
    run = run_role("milvus", "-vvv", gather_facts=True)
    assert run.rc == 0, run
    assert "Enforce authorization" in run.output  # the tasks that handle the secrets did run
    for secret in (ROOT_PASSWORD, APP_PASSWORD):
        assert secret not in run.output
