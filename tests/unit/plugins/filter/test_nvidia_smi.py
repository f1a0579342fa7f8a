"""Unit tests for filter_plugins/nvidia_smi.py over every recording in molecule/fixtures/gpu/recordings."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
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


# --- nvidia_smi_usage: memory in use and processes from the plain table ---------------------------

# Per recording: (index, memory_used_mib, memory_total_mib, processes) of each GPU.
PYTHON3 = {"pid": 2471, "type": "C", "name": "python3", "used_mib": 77852}
USAGE = {
    "l40x1": [(0, 4, 46068, [])],
    "a100x1": [(0, 77860, 81920, [PYTHON3])],
    "a100x8": [(index, 4, 81920, []) for index in range(8)],
    "old-driver": [(0, 0, 81251, [])],
}


def _usage(text: str | list[str]) -> list[tuple]:
    return [(u["index"], u["memory_used_mib"], u["memory_total_mib"], u["processes"])
            for u in FILTERS["nvidia_smi_usage"](text)]


def test_every_recording_has_its_usage() -> None:
    assert set(USAGE) == set(EXPECTED)


@pytest.mark.parametrize("profile", sorted(USAGE))
def test_usage_of_recording(profile: str) -> None:
    assert _usage(_read(profile, "nvidia-smi.txt")) == USAGE[profile]
    assert _usage(_read(profile, "nvidia-smi.txt").splitlines()) == USAGE[profile]


@pytest.mark.parametrize("profile", sorted(USAGE))
def test_gpus_with_usage_carry_the_table_per_index(profile: str) -> None:
    usage = FILTERS["nvidia_smi_usage"](_read(profile, "nvidia-smi.txt"))
    gpus = FILTERS["nvidia_smi_gpus"](_read(profile, "query-gpu.csv"), usage=usage)
    plain = FILTERS["nvidia_smi_gpus"](_read(profile, "query-gpu.csv"))
    for gpu, without, (index, used, total, processes) in zip(gpus, plain, USAGE[profile], strict=True):
        assert gpu == {**without, "memory_used_mib": used, "processes": processes}
        assert gpu["index"] == index and gpu["memory_mib"] == total


# The old-driver recording (79-column table) with processes in its table, as drivers before 530 print them.
OLD_ROWS = (
    "|    0   N/A  N/A      2471      C   python3                         77852MiB |\n"
    "|    0   N/A  N/A      3310    C+G   ...da3/envs/chatchat/bin/python    1200MiB |\n"
    "|    0   N/A  N/A      4020      G   /usr/lib/xorg/Xorg                    N/A |\n"
)


def test_usage_of_the_79_column_table_with_processes() -> None:
    text = _read("old-driver", "nvidia-smi.txt")
    no_processes = next(line for line in text.splitlines() if "No running processes found" in line)
    (gpu,) = FILTERS["nvidia_smi_usage"](text.replace(no_processes + "\n", OLD_ROWS))
    assert gpu["processes"] == [
        PYTHON3,
        {"pid": 3310, "type": "C+G", "name": "...da3/envs/chatchat/bin/python", "used_mib": 1200},
        {"pid": 4020, "type": "G", "name": "/usr/lib/xorg/Xorg", "used_mib": None},
    ]


def test_usage_of_a_table_without_gi_and_ci_columns() -> None:
    """Drivers before 450 print no GI and CI columns."""
    text = (
        "| NVIDIA-SMI 440.33.01    Driver Version: 440.33.01    CUDA Version: 10.2     |\n"
        "|===============================+======================+======================|\n"
        "|   0  Tesla V100-SXM2...  On   | 00000000:00:1E.0 Off |                    0 |\n"
        "| N/A   34C    P0    41W / 300W |  30000MiB / 32510MiB |      0%      Default |\n"
        "+-------------------------------+----------------------+----------------------+\n"
        "+-----------------------------------------------------------------------------+\n"
        "| Processes:                                                       GPU Memory |\n"
        "|  GPU       PID   Type   Process name                             Usage      |\n"
        "|=============================================================================|\n"
        "|    0     12345      C   python                                     29990MiB |\n"
        "+-----------------------------------------------------------------------------+\n"
    )
    assert _usage(text) == [(0, 30000, 32510, [{"pid": 12345, "type": "C", "name": "python", "used_mib": 29990}])]


def test_usage_skips_the_mig_devices_table() -> None:
    """With MIG on, the MIG devices table (MiB / MiB cells too) comes between the GPUs and the processes."""
    text = _read("a100x1", "nvidia-smi.txt")
    mig = (
        "+---------------------------------------------------------------------------------------+\n"
        "| MIG devices:                                                                          |\n"
        "+------------------+--------------------------------+-----------+-----------------------+\n"
        "| GPU  GI  CI  MIG |                   Memory-Usage |        Vol|      Shared           |\n"
        "|==================+================================+===========+=======================|\n"
        "|  0    1   0   0  |              13MiB / 40192MiB  | 42      0 |  3   0    2    0    0 |\n"
        "|                  |               0MiB / 65535MiB  |           |                       |\n"
        "+------------------+--------------------------------+-----------+-----------------------+\n"
    )
    gpus, processes = text.split("\n" + " " * 89 + "\n")  # the blank line before the processes box
    text = gpus + "\n" + mig + " " * 89 + "\n" + processes.replace("|    0   N/A  N/A      2471", "|    0    1    0      2471")
    assert text.index("MIG devices:") < text.index("Processes:")
    assert _usage(text) == USAGE["a100x1"]


@pytest.mark.parametrize(
    "row, broken, message",
    [
        ("python3                                   77852MiB", "python3                                   lots of it",
         "line 19 is not a process row"),
        ("|    0   N/A  N/A      2471", "|    3   N/A  N/A      2471", "a process on GPU 3, which the table does not list"),
    ],
    ids=["unreadable-row", "unknown-gpu"],
)
def test_usage_refuses_a_process_row_it_cannot_read(row: str, broken: str, message: str) -> None:
    text = _read("a100x1", "nvidia-smi.txt")
    assert row in text
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["nvidia_smi_usage"](text.replace(row, broken))


@pytest.mark.parametrize(
    "text, message",
    [
        (_read("no-driver", "nvidia-smi.txt"), "could not communicate with the NVIDIA driver"),
        ("No devices were found\n", "found no NVIDIA GPU"),
        ("hello world\n", "not the nvidia-smi table"),
        (None, "nvidia_smi_usage"),
    ],
)
def test_usage_fails_clearly(text: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["nvidia_smi_usage"](text)


def test_gpus_with_usage_of_other_gpus_fail() -> None:
    usage = FILTERS["nvidia_smi_usage"](_read("l40x1", "nvidia-smi.txt"))
    with pytest.raises(AnsibleFilterError, match=r"the query lists GPUs \[0, 1, 2, 3, 4, 5, 6, 7\] but the nvidia-smi table \[0\]"):
        FILTERS["nvidia_smi_gpus"](_read("a100x8", "query-gpu.csv"), usage=usage)
    with pytest.raises(AnsibleFilterError, match="usage must be the result of nvidia_smi_usage"):
        FILTERS["nvidia_smi_gpus"](_read("l40x1", "query-gpu.csv"), usage="4MiB")
