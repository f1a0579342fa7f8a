"""docs/BENCHMARKS.md as lab/bench/run_all.py writes it: a run of some sections replaces those and
keeps the others, each with the line naming the run that measured it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab" / "bench"))
import run_all  # noqa: E402

OLD_PAGE = """# Benchmarks

Old header.

<!-- bench section: cold -->
## Cold provisioning

7.6 min

Measured by `make bench BENCH_ONLY=cold` on 2026-12-01, in 8 min.

<!-- bench section: pip -->
## pip against uv

old figures

Measured by `make bench BENCH_ONLY=pip` on 2026-12-01, in 3 min.
"""


@pytest.fixture()
def page(tmp_path, monkeypatch):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(OLD_PAGE)
    monkeypatch.setattr(run_all, "machine", lambda: "a test machine")
    monkeypatch.setattr(run_all, "section_pip", lambda runs: f"## pip against uv\n\nnew figures, {runs} runs\n")
    monkeypatch.setattr(run_all, "section_settings", lambda runs: "## Ansible settings\n\nsettings figures\n")
    return out


def write(page: Path, monkeypatch, only: str) -> str:
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--only", only, "--runs", "2", "--out", str(page)])
    assert run_all.main() == 0
    return page.read_text()


def test_a_run_of_one_section_replaces_it_and_keeps_the_others(page, monkeypatch):
    text = write(page, monkeypatch, "pip")
    sections = run_all.kept_sections(text)
    assert list(sections) == ["cold", "pip"]
    assert sections["cold"] == run_all.kept_sections(OLD_PAGE)["cold"]
    assert "new figures, 2 runs" in sections["pip"] and "old figures" not in text
    assert "Measured by `make bench BENCH_ONLY=pip BENCH_RUNS=2` on " in sections["pip"]
    assert "Old header." not in text and "a test machine" in text


def test_sections_stay_in_the_benchmark_order(page, monkeypatch):
    text = write(page, monkeypatch, "settings")
    assert list(run_all.kept_sections(text)) == ["cold", "pip", "settings"]
    assert text.index("## Cold provisioning") < text.index("## pip against uv") < text.index("## Ansible settings")


def test_a_page_without_markers_keeps_nothing():
    assert run_all.kept_sections("# Benchmarks\n\n## Cold provisioning\n\n7.6 min\n") == {}


PROFILED_RUN = """PLAY RECAP *********************************************************************
lab-l40-1                  : ok=249  changed=0    unreachable=0    failed=0    skipped=111  rescued=0    ignored=0

Monday 07 December 2026  05:29:14 +0000 (0:00:00.050)       0:01:36.103 *******
===============================================================================
chatchat_services : Install one unit per service ------------------------ 5.32s
Gathering Facts --------------------------------------------------------- 0.84s
Monday 07 December 2026  05:29:14 +0000 (0:00:00.050)       0:01:36.103 *******
===============================================================================
chatchat_services ------------------------------------------------------ 18.26s
python_env ------------------------------------------------------------- 16.76s
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
total ------------------------------------------------------------------ 95.70s
"""


def test_the_profiled_run_is_read_into_roles_and_tasks():
    roles, tasks = run_all.profile_tables(PROFILED_RUN)
    assert roles == [("chatchat_services", 18.26), ("python_env", 16.76)]
    assert tasks == [("chatchat_services : Install one unit per service", 5.32), ("Gathering Facts", 0.84)]
