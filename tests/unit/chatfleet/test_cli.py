"""The chatfleet tool: what it refuses before running, and its report over a real ansible-runner run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from chatfleet import cli, report
from chatfleet.inventory import UsageError, load_fleet

ROOT = Path(__file__).resolve().parents[3]
LAB = str(ROOT / "inventories" / "lab")
PROD = str(ROOT / "inventories" / "prod")
FIXTURES = Path(__file__).parent / "fixtures"


def plan(*argv: str):
    return cli.plan(cli.parser().parse_args(list(argv)))


@pytest.mark.parametrize(("limit", "hosts"), [
    (None, ["lab-l40-1", "lab-a100-1"]),
    ("a100", ["lab-a100-1"]),
    ("gpu_nodes:!a100", ["lab-l40-1"]),
    ("gpu_nodes:&milvus", ["lab-l40-1"]),
    ("lab-*", ["lab-l40-1", "lab-a100-1"]),
    ("lab-a100-1,l40", ["lab-l40-1", "lab-a100-1"]),
])
def test_limit_selects_hosts_in_inventory_order(limit, hosts):
    assert load_fleet(LAB).match(limit) == hosts


def test_prod_example_inventory_loads():
    fleet = load_fleet(PROD)
    assert fleet.groups["l40"] and fleet.groups["a100"]
    assert all(host.endswith(".example.internal") for host in fleet.hosts)


@pytest.mark.parametrize(("argv", "message"), [
    (["status", "-i", LAB, "--limit", ""], "--limit is empty"),
    (["status", "-i", LAB, "--limit", "  "], "--limit is empty"),
    (["rollout", "-i", LAB, "--limit", "h100"], "'h100' is no group or host"),
    (["rollout", "-i", LAB, "--limit", "a100:&milvus"], "selects no host"),
    (["rollout", "-i", "inventories/nowhere"], "does not exist"),
    (["rollout", "-i", LAB, "--serial", "100%"], "--allow-all-at-once"),
    (["site", "-i", LAB, "--serial", "2"], "--allow-all-at-once"),
    (["rollout", "-i", LAB, "--serial", "0"], "at least 1"),
    (["rollout", "-i", LAB, "--max-fail-percentage", "150"], "from 0 to 100"),
    (["uninstall", "-i", LAB], "add --yes"),
    (["status", "-i", LAB, "--vault-password-file", "/nonexistent/pw"], "does not exist"),
])
def test_bad_input_is_refused_before_anything_runs(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        plan(*argv)


def test_unknown_group_names_the_known_groups():
    with pytest.raises(UsageError) as error:
        plan("rollout", "-i", LAB, "--limit", "h100")
    for group in ("a100", "l40", "gpu_nodes", "milvus", "model_cache"):
        assert group in str(error.value)


def test_main_exits_2_and_says_nothing_ran(capsys):
    assert cli.main(["rollout", "-i", LAB, "--limit", ""]) == 2
    assert "Nothing was run" in capsys.readouterr().err


def test_all_at_once_with_the_override_and_a_single_node_fleet_are_allowed():
    decided = plan("rollout", "-i", LAB, "--serial", "100%", "--allow-all-at-once")
    assert decided["batches"] == [["lab-l40-1", "lab-a100-1"]]
    assert decided["extravars"]["rollout_allow_all_at_once"] is True
    assert plan("rollout", "-i", LAB, "--limit", "a100", "--serial", "100%")["batches"] == [["lab-a100-1"]]


def test_default_plan_is_a_canary_then_batches_and_passes_the_settings_on():
    decided = plan("site", "-i", LAB, "-e", "chatchat_temperature=0.5", "-e", '{"models_verify": "size"}')
    assert decided["batches"] == [["lab-l40-1"], ["lab-a100-1"]]
    assert decided["extravars"] == {"chatchat_temperature": "0.5", "models_verify": "size", "rollout_serial": [1, "25%"],
                                    "rollout_max_fail_percentage": 0, "rollout_allow_all_at_once": False}
    assert decided["playbook"] == "site.yml" and decided["cmdline"] == []
    assert plan("check", "-i", LAB)["cmdline"] == ["--check", "--diff"]
    assert plan("rollout", "-i", LAB)["playbook"] == "playbooks/rollout.yml"
    assert plan("rollout", "-i", LAB, "--rollback")["playbook"] == "playbooks/rollback.yml"


def test_the_default_serial_is_the_playbooks_default():
    assert cli.default_serial() == [1, "25%"]
    for playbook, index in (("gpu_nodes.yml", 0), ("rollback.yml", 1)):
        play = yaml.safe_load((ROOT / "playbooks" / playbook).read_text())[index]
        assert "vars/fleet.yml" in play["vars_files"], playbook
        assert play["serial"] == "{{ rollout_serial | default(fleet_default_serial) }}", playbook
        assert play["max_fail_percentage"] == \
            "{{ rollout_max_fail_percentage | default(fleet_default_max_fail_percentage) }}", playbook
    preflight = yaml.safe_load((ROOT / "playbooks" / "preflight.yml").read_text())[0]
    assert "vars/fleet.yml" in preflight["vars_files"]
    assert "default(fleet_default_serial)" in (ROOT / "playbooks" / "preflight.yml").read_text()


def test_a_vault_encrypted_inventory_needs_a_password(tmp_path, monkeypatch):
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inventory = tmp_path / "inv"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    node-1:\n")
    (inventory / "group_vars" / "all" / "vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    with pytest.raises(UsageError, match="vault.yml is vault-encrypted and no vault password was given"):
        plan("status", "-i", str(inventory))
    password = tmp_path / "pw"
    password.write_text("secret\n")
    decided = plan("status", "-i", str(inventory), "--vault-password-file", str(password))
    assert decided["cmdline"] == ["--vault-password-file", str(password)]
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password))
    assert plan("status", "-i", str(inventory))["cmdline"] == ["--vault-password-file", str(password)]


def test_report_over_a_real_ansible_runner_run(tmp_path, capsys):
    """Runs fixtures/events.yml on two local hosts through the tool's own runner call."""
    args = cli.parser().parse_args(["status", "-i", str(FIXTURES / "hosts.yml"), "--artifacts", str(tmp_path / "art"),
                                    "-e", f"scratch={tmp_path}"])
    decided = cli.plan(args)
    decided["playbook"] = str(FIXTURES / "events.yml")
    rc = cli.run(args, decided)
    assert rc == 1  # node-b failed
    run_dir = next((tmp_path / "art").iterdir())
    data = json.loads((run_dir / "report.json").read_text())
    assert data["result"] == "failed" and data["failed_hosts"] == ["node-b"] and data["rc"] != 0
    a, b = data["hosts"]["node-a"], data["hosts"]["node-b"]
    assert a["status"] == "changed" and a["changed_tasks"] == ["Change something"] and a["failed"] == 0
    assert a["skipped"] == 2 and a["ok"] == 4  # the display fact is set once, on node-a; "Fail on node-b" is skipped on node-a; the ignored failure is ok
    assert a["health_before"]["healthy"] is True and a["health_after"]["problems"] == ["worker down"]
    assert b["status"] == "failed" and b["failures"] == [{"task": "Fail on node-b", "msg": "node-b is broken on purpose"}]
    assert b["health_before"]["stage"] == "before" and b["health_after"] is None
    markdown = (run_dir / "report.md").read_text()
    assert "**failed: node-b**" in markdown and "| node-a | changed | 1 |" in markdown
    assert "UNHEALTHY: worker down" in markdown
    assert (tmp_path / "node-a.txt").read_text() == "node-a\n"
    out = capsys.readouterr().out
    assert out.index("chatfleet status:") < out.index("== Event shapes")
    assert "line one of node-a\nline two\n" in out  # the display fact's lines, printed as they are
    assert re.search(r"node-b\s+failed\s+Fail on node-b\s+node-b is broken on purpose", out)
    assert re.search(r"node-a\s+changed\s+Change something", out)


def test_hosts_the_run_never_reached_are_reported_as_not_run():
    recorder = report.RunRecorder()
    data = report.build_report(recorder, command="rollout", playbook="playbooks/rollout.yml", inventory=LAB,
                               limit=None, targets=["lab-l40-1", "lab-a100-1"], batches=[["lab-l40-1"], ["lab-a100-1"]],
                               rc=2, runner_status="failed", artifacts=Path("/tmp"))
    assert data["not_run"] == ["lab-l40-1", "lab-a100-1"] and data["result"] == "failed"
    assert "not run" in report.markdown(data)


def test_a_gpu_node_that_only_ran_the_preflight_is_not_run():
    """A rollout stopped after the canary: the other node has preflight events but no GPU play task."""
    recorder = report.RunRecorder()
    for host in ("canary", "other"):
        recorder.handle({"event": "runner_on_ok", "created": "2026-12-01T20:00:00.000000",
                         "event_data": {"host": host, "task": "Validate the mirror settings", "res": {"changed": False}}})
    recorder.handle({"event": "runner_on_ok", "created": "2026-12-01T20:00:01.000000",
                     "event_data": {"host": "canary", "task": "Any task that sets the fact",
                                    "res": {"ansible_facts": {"chatchat_health_result": {"healthy": True, "stage": "before"}}}}})
    recorder.handle({"event": "runner_on_failed", "created": "2026-12-01T20:00:02.000000",
                     "event_data": {"host": "canary", "task": "Check the health gate", "res": {"msg": "worker down"}}})
    data = report.build_report(recorder, command="rollout", playbook="playbooks/rollout.yml", inventory=LAB, limit=None,
                               targets=["canary", "other"], batches=[["canary"], ["other"]], rc=2,
                               runner_status="failed", artifacts=Path("/tmp"))
    assert data["failed_hosts"] == ["canary"] and data["not_run"] == ["other"]
    assert data["hosts"]["canary"]["health_before"]["healthy"] is True


def test_backup_and_restore_run_their_playbooks_and_restore_passes_the_archive_and_the_confirmation():
    assert plan("backup", "-i", LAB)["playbook"] == "playbooks/backup.yml"
    unconfirmed = plan("restore", "-i", LAB)
    assert unconfirmed["playbook"] == "playbooks/restore.yml"
    assert unconfirmed["extravars"] == {"restore_archive": "latest", "restore_confirm": False}
    confirmed = plan("restore", "-i", LAB, "--limit", "a100", "--archive", "20261207T101500Z", "--yes")
    assert confirmed["targets"] == ["lab-a100-1"]
    assert confirmed["extravars"] == {"restore_archive": "20261207T101500Z", "restore_confirm": True}


def test_version_is_the_packages(capsys):
    from chatfleet import __version__
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"chatfleet {__version__}"


def test_the_project_is_found_from_the_option_the_environment_or_the_working_directory(tmp_path, monkeypatch):
    from chatfleet import project
    monkeypatch.delenv("CHATFLEET_ROOT", raising=False)
    monkeypatch.chdir(ROOT / "roles" / "backup")
    assert project.find() == ROOT
    monkeypatch.setenv("CHATFLEET_ROOT", str(tmp_path))
    with pytest.raises(project.ProjectNotFound, match=rf"CHATFLEET_ROOT={tmp_path} is not a chatfleet project"):
        project.find()
    assert project.find(str(ROOT)) == ROOT


def test_outside_a_project_the_tool_says_where_to_point_it_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CHATFLEET_ROOT", raising=False)
    assert cli.main(["status", "-i", LAB, "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--project-dir {tmp_path} is not a chatfleet project" in err and "Nothing was run" in err
