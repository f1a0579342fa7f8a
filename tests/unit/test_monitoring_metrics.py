"""The monitoring probe (roles/monitoring/files/chatfleet-metrics.py) over the recorded nvidia-smi
outputs (the GPU double), its text format, and the names the alert rules and the Grafana dashboard
use: every chatfleet_* name must be one the probe writes. (The whole-site scenario checks the same
rules and dashboard against a real Prometheus scraping real nodes.)"""
from __future__ import annotations

import importlib.util
import json
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"
MIB = 1024 * 1024

_spec = importlib.util.spec_from_file_location("chatfleet_metrics", ROOT / "roles/monitoring/files/chatfleet-metrics.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


@pytest.fixture
def nvidia_smi(tmp_path, monkeypatch):
    """The GPU double as an executable, replaying a profile chosen by the test."""
    double = tmp_path / "nvidia-smi"
    double.write_text((ROOT / "molecule/fixtures/gpu/nvidia-smi-double").read_text().replace("#!/usr/bin/python3", f"#!{sys.executable}", 1))
    double.chmod(double.stat().st_mode | stat.S_IXUSR)

    def use(profile: str) -> str:
        monkeypatch.setenv("NVIDIA_SMI_DOUBLE_DIR", str(RECORDINGS / profile))
        return str(double)
    return use


def _samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if not line.startswith("#")}


@pytest.mark.parametrize(("profile", "count", "total_mib"), [("l40x1", 1, 46068), ("a100x8", 8, 81920), ("a100x1", 1, 81920),
                                                             ("old-driver", 1, 81251)])
def test_gpu_metrics_from_each_recording(nvidia_smi, profile, count, total_mib):
    metrics = probe.Metrics()
    assert probe.gpus(metrics, nvidia_smi(profile)) is True
    samples = _samples(metrics.render())
    assert len([name for name in samples if name.startswith("chatfleet_gpu_info{")]) == count
    assert samples['chatfleet_gpu_memory_total_bytes{gpu="0"}'] == total_mib * MIB
    table = (RECORDINGS / profile / "nvidia-smi.txt").read_text()
    temperature, watts, used = re.search(r"\|\s+\S+\s+(\d+)C\s+P\d+\s+(\d+)W /.*?\|\s+(\d+)MiB /", table).groups()
    assert samples['chatfleet_gpu_temperature_celsius{gpu="0"}'] == float(temperature)
    assert samples['chatfleet_gpu_power_watts{gpu="0"}'] == float(watts)
    assert samples['chatfleet_gpu_memory_used_bytes{gpu="0"}'] == float(used) * MIB


def test_no_driver_gives_no_gpu_metrics(nvidia_smi):
    metrics = probe.Metrics()
    assert probe.gpus(metrics, nvidia_smi("no-driver")) is False
    assert "chatfleet_gpu" not in metrics.render()


def test_the_textfile_is_replaced_whole_and_readable(tmp_path, nvidia_smi):
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    assert probe.main(["--textfile-dir", str(textfiles), "--nvidia-smi", nvidia_smi("l40x1")]) == 0
    written = textfiles / "chatfleet.prom"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644 and [p.name for p in textfiles.iterdir()] == ["chatfleet.prom"]
    text = written.read_text()
    assert "# TYPE chatfleet_gpu_utilization_ratio gauge" in text and "\nchatfleet_probe_success 1\n" in text
    assert 'chatfleet_gpu_info{driver="535.129.03",gpu="0",name="NVIDIA L40",uuid="GPU-5c4a8b1e-93d7-2f60-0b1a-6e2d94c7a3f1"} 1' in text


def test_an_unreadable_record_is_a_failed_probe_not_a_crash(tmp_path):
    assert probe.main(["--textfile-dir", str(tmp_path), "--services-record", str(tmp_path / "none.json")]) == 0
    assert "\nchatfleet_probe_success 0\n" in (tmp_path / "chatfleet.prom").read_text()


def _expressions() -> dict[str, str]:
    rules = yaml.safe_load((ROOT / "roles/prometheus_server/files/chatfleet-rules.yml").read_text())
    found = {f"rule {rule['alert']}": rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    dashboard = json.loads((ROOT / "roles/prometheus_server/files/grafana-dashboard.json").read_text())
    found.update({f"panel {panel['title']} {target['refId']}": target["expr"]
                  for panel in dashboard["panels"] for target in panel["targets"]})
    return found


def test_every_chatfleet_metric_in_the_rules_and_the_dashboard_is_written_by_the_probe():
    expressions = _expressions()
    assert len(expressions) >= 15
    for where, expr in expressions.items():
        for name in re.findall(r"\bchatfleet_[a-z_]+\b", expr):
            assert name in probe.METRICS, f"{where}: {name} is not a metric chatfleet-metrics writes"


def test_the_gpu_double_answers_the_probes_query():
    double = (ROOT / "molecule/fixtures/gpu/nvidia-smi-double").read_text()
    assert probe.GPU_FIELDS.replace("\n", "") in double.replace('"\n                  "', "")
