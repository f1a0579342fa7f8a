"""Unit tests for filter_plugins/nvidia_smi.py over every recording in molecule/fixtures/gpu/recordings."""
from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
RECORDINGS = ROOT / "molecule" / "fixtures" / "gpu" / "recordings"
DOUBLE = ROOT / "molecule" / "fixtures" / "gpu" / "nvidia-smi-double"
QUERY_ARGS = ["--query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id", "--format=csv,noheader,nounits"]


def _load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_smi_filters", ROOT / "filter_plugins" / "nvidia_smi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nvidia_smi = _load_plugin()
FILTERS = nvidia_smi.FilterModule().filters()


def _read(profile: str, name: str) -> str:
    return (RECORDINGS / profile / name).read_text(encoding="utf-8")


# What each recording must parse to: (driver, cuda, gpu count, name, memory MiB, family).
EXPECTED = {
    "l40x1": ("535.129.03", "12.2", 1, "NVIDIA L40", 46068, "l40"),
    "a100x1": ("535.129.03", "12.2", 1, "NVIDIA A100-SXM4-80GB", 81920, "a100"),
    "a100x8": ("535.129.03", "12.2", 8, "NVIDIA A100-SXM4-80GB", 81920, "a100"),
    "old-driver": ("470.223.02", "11.4", 1, "NVIDIA A100-SXM4-80GB", 81251, "a100"),
}


def test_every_recording_is_covered() -> None:
    profiles = {p.name for p in RECORDINGS.iterdir() if p.is_dir()}
    assert profiles == set(EXPECTED) | {"no-driver"}


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_header_of_recording(profile: str) -> None:
    driver, cuda, *_ = EXPECTED[profile]
    assert FILTERS["nvidia_smi_header"](_read(profile, "nvidia-smi.txt")) == {"driver_version": driver, "cuda_version": cuda}


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_header_accepts_stdout_lines(profile: str) -> None:
    lines = _read(profile, "nvidia-smi.txt").splitlines()
    assert FILTERS["nvidia_smi_header"](lines)["driver_version"] == EXPECTED[profile][0]


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_gpus_of_recording(profile: str) -> None:
    driver, _cuda, count, name, memory, family = EXPECTED[profile]
    gpus = FILTERS["nvidia_smi_gpus"](_read(profile, "query-gpu.csv"))
    assert len(gpus) == count
    assert [g["index"] for g in gpus] == list(range(count))
    for gpu in gpus:
        assert set(gpu) == {"index", "name", "uuid", "memory_mib", "driver_version", "pci_bus_id"}
        assert gpu["name"] == name
        assert gpu["memory_mib"] == memory
        assert isinstance(gpu["memory_mib"], int) and isinstance(gpu["index"], int)
        assert gpu["driver_version"] == driver
        assert gpu["uuid"].startswith("GPU-") and len(gpu["uuid"]) == 40
        assert FILTERS["gpu_model_family"](gpu["name"]) == family
    assert len({g["uuid"] for g in gpus}) == count
    assert len({g["pci_bus_id"] for g in gpus}) == count


def test_a100x8_bus_ids_in_order() -> None:
    gpus = FILTERS["nvidia_smi_gpus"](_read("a100x8", "query-gpu.csv"))
    assert [g["pci_bus_id"][9:11] for g in gpus] == ["07", "0F", "47", "4E", "87", "90", "B7", "BD"]


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_table_rows_agree_with_query(profile: str) -> None:
    """The per-GPU rows of the table list the same bus ids and memory as the CSV."""
    table = _read(profile, "nvidia-smi.txt")
    for gpu in FILTERS["nvidia_smi_gpus"](_read(profile, "query-gpu.csv")):
        assert gpu["pci_bus_id"] in table
        assert f"/ {gpu['memory_mib']}MiB" in table


@pytest.mark.parametrize("name", ["nvidia-smi.txt", "query-gpu.csv"])
@pytest.mark.parametrize("filter_name", ["nvidia_smi_header", "nvidia_smi_gpus"])
def test_no_driver_recording_fails_clearly(name: str, filter_name: str) -> None:
    with pytest.raises(AnsibleFilterError, match="could not communicate with the NVIDIA driver"):
        FILTERS[filter_name](_read("no-driver", name))
    assert (RECORDINGS / "no-driver" / "exit-code").read_text().strip() == "9"


@pytest.mark.parametrize(
    "text, message",
    [
        ("No devices were found\n", "found no NVIDIA GPU"),
        ("Failed to initialize NVML: Driver/library version mismatch\n", "differ"),
        ("", "no 'Driver Version:' and 'CUDA Version:' found"),
        ("hello world\n", "not the nvidia-smi table"),
        ("| NVIDIA-SMI 535.129.03             Driver Version: 535.129.03   |\n", "no 'CUDA Version:' found"),
        ("CUDA Version: 12.2\n", "no 'Driver Version:' found"),
    ],
)
def test_header_malformed(text: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["nvidia_smi_header"](text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("index, name, uuid, memory.total [MiB], driver_version, pci.bus_id\n", "CSV header"),
        ("0, NVIDIA L40, GPU-5c4a8b1e-93d7-2f60-0b1a-6e2d94c7a3f1, 46068 MiB, 535.129.03, 00000000:17:00.0\n", "nounits"),
        ("0, NVIDIA L40, GPU-5c4a8b1e-93d7-2f60-0b1a-6e2d94c7a3f1, 46068\n", "has 4 fields, expected 6"),
        ("0, NVIDIA L40, GPU-x, 46068, 535.129.03, 00000000:17:00.0, extra\n", "has 7 fields"),
        ("zero, NVIDIA L40, GPU-x, 46068, 535.129.03, 00000000:17:00.0\n", "index 'zero' is not an integer"),
        ("0, NVIDIA L40, GPU-x, [N/A], 535.129.03, 00000000:17:00.0\n", "memory.total"),
        ("0, , GPU-x, 46068, 535.129.03, 00000000:17:00.0\n", "empty GPU name"),
        ("0, NVIDIA L40, GPU-x, 46068, 535.129.03, 00000000:17:00.0\nNo devices were found\n", "no NVIDIA GPU"),
    ],
)
def test_gpus_malformed(text: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["nvidia_smi_gpus"](text)


def test_gpus_line_number_in_error() -> None:
    good = _read("a100x8", "query-gpu.csv").splitlines()
    with pytest.raises(AnsibleFilterError, match="line 3 "):
        FILTERS["nvidia_smi_gpus"]("\n".join(good[:2] + ["garbage"] + good[2:]))


def test_gpus_empty_output_is_empty_list() -> None:
    assert FILTERS["nvidia_smi_gpus"]("") == []
    assert FILTERS["nvidia_smi_gpus"]("\n\n") == []


@pytest.mark.parametrize("filter_name", ["nvidia_smi_header", "nvidia_smi_gpus"])
@pytest.mark.parametrize("value", [None, 42, {"stdout": "x"}, [1, 2]])
def test_wrong_input_type(filter_name: str, value: object) -> None:
    with pytest.raises(AnsibleFilterError, match=filter_name):
        FILTERS[filter_name](value)


@pytest.mark.parametrize(
    "name, family",
    [
        ("NVIDIA L40", "l40"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-SXM4-40GB", "a100"),
        ("NVIDIA A100 80GB PCIe", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100"),
        ("Tesla V100-SXM2-32GB", "v100"),
        ("Tesla T4", "t4"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("Quadro RTX 8000", "rtx8000"),
        ("  NVIDIA   L40  ", "l40"),
    ],
)
def test_gpu_model_family(name: str, family: str) -> None:
    assert FILTERS["gpu_model_family"](name) == family


@pytest.mark.parametrize("value", ["", "   ", "NVIDIA", None, 7])
def test_gpu_model_family_rejects(value: object) -> None:
    with pytest.raises(AnsibleFilterError, match="gpu_model_family"):
        FILTERS["gpu_model_family"](value)


@pytest.mark.parametrize("block", ["DOCUMENTATION", "EXAMPLES", "RETURN"])
def test_every_filter_is_documented(block: str) -> None:
    docs = yaml.safe_load(getattr(nvidia_smi, block))
    assert set(docs) == set(FILTERS)
    for name in FILTERS:
        if block == "DOCUMENTATION":
            assert docs[name]["name"] == name
            assert docs[name]["short_description"]
            assert "_input" in docs[name]["options"]
        elif block == "RETURN":
            assert docs[name]["_value"]["type"]
        else:
            assert f"| {name}" in docs[name]
            yaml.safe_load(docs[name])


def test_filters_have_type_hints() -> None:
    for func in FILTERS.values():
        hints = inspect.get_annotations(func)
        assert "return" in hints and len(hints) == len(inspect.signature(func).parameters) + 1


# The test double replays the recordings exactly and refuses anything unrecorded.
@pytest.mark.parametrize("profile", sorted(EXPECTED) + ["no-driver"])
@pytest.mark.parametrize("args, recording", [([], "nvidia-smi.txt"), (QUERY_ARGS, "query-gpu.csv")])
def test_double_replays_recording(profile: str, args: list[str], recording: str) -> None:
    run = subprocess.run(
        [sys.executable, str(DOUBLE), *args],
        env={"NVIDIA_SMI_DOUBLE_DIR": str(RECORDINGS / profile)},
        capture_output=True, text=True, check=False,
    )
    assert run.stdout == _read(profile, recording)
    assert run.returncode == (9 if profile == "no-driver" else 0)


@pytest.mark.parametrize("args", [["-L"], ["--query-gpu=name", "--format=csv"], QUERY_ARGS[:1], [QUERY_ARGS[1], QUERY_ARGS[0]]])
def test_double_rejects_unrecorded_args(args: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, str(DOUBLE), *args],
        env={"NVIDIA_SMI_DOUBLE_DIR": str(RECORDINGS / "l40x1")},
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == f"nvidia-smi double: no recording for {' '.join(args)}\n"


def test_double_is_labelled() -> None:
    assert "TEST DOUBLE" in DOUBLE.read_text().splitlines()[2]
    assert DOUBLE.stat().st_mode & 0o111
