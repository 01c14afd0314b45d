"""drivers/cpu.py: the CPU record from recorded machines (tests/fixtures/cpu/) and this one."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

from appliance.drivers.cpu import CpuDriver, cpu_temperature_c
from appliance.records import Accelerator, DeviceKind

FIXTURES = Path(__file__).parents[1] / "fixtures" / "cpu"


def recorded(name: str) -> Accelerator:
    [cpu] = CpuDriver(FIXTURES / name).discover()
    return cpu


def test_recorded_epyc_vm_is_one_socket_one_node_with_avx512_and_the_zen4_build() -> None:
    cpu = recorded("amd-epyc-vm-2vcpu")

    assert (cpu.id, cpu.kind, cpu.vendor, cpu.name) == ("cpu0", DeviceKind.CPU, "AMD", "AMD EPYC")
    assert cpu.usable
    assert cpu.memory_total_mib == 24684084 // 1024  # MemTotal in the recorded meminfo
    details = cpu.details
    assert (details["sockets"], details["cores"], details["threads"]) == (1, 2, 2)
    assert details["numa_nodes"] == 1
    assert details["architecture"] == "x86_64"
    assert {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16"} <= set(
        details["isa_flags"]  # type: ignore[arg-type]
    )
    assert details["isa_level"] == "x86-64-v4"
    assert details["llama_cpp_cpu_variant"] == "zen4"
    assert cpu.reason == (
        "usable: 2 cores / 2 threads, AVX-512; "
        "CPUID suggests llama.cpp's zen4 variant (the runtime self-test decides)"
    )


def test_recorded_haswell_xeon_vm_counts_two_sockets_and_picks_the_haswell_build() -> None:
    cpu = recorded("xeon-e5-2678v3-vm-2vcpu")

    assert (cpu.vendor, cpu.name) == ("Intel", "Intel(R) Xeon(R) CPU E5-2678 v3 @ 2.50GHz")
    assert (cpu.details["sockets"], cpu.details["cores"], cpu.details["threads"]) == (2, 2, 2)
    assert cpu.details["isa_level"] == "x86-64-v3"
    assert "avx512f" not in cpu.details["isa_flags"]  # type: ignore[operator]
    assert cpu.reason == (
        "usable: 2 cores / 2 threads, AVX2; "
        "CPUID suggests llama.cpp's haswell variant (the runtime self-test decides)"
    )


def test_recorded_kunpeng_920_without_model_name_is_named_from_implementer_and_part() -> None:
    cpu = recorded("kunpeng920-cloud-1vcpu")

    assert (cpu.vendor, cpu.name) == ("HiSilicon", "HiSilicon Kunpeng 920 (TaiShan-v110)")
    assert cpu.details["architecture"] == "aarch64"
    assert cpu.details["isa_flags"] == ["asimd", "asimddp", "asimdhp"]
    assert cpu.details["isa_level"] is None
    assert cpu.memory_total_mib == 1006904 // 1024


def test_recorded_kunpeng_920_has_dotprod_and_fp16_so_the_armv8_2_2_build_fits() -> None:
    cpu = recorded("kunpeng920-cloud-1vcpu")

    assert cpu.details["llama_cpp_cpu_variant"] == "armv8.2_2"
    assert cpu.reason == (
        "usable: 1 core / 1 thread, NEON dotprod; "
        "CPUID suggests llama.cpp's armv8.2_2 variant (the runtime self-test decides)"
    )


def test_recording_without_numa_sysfs_reports_numa_nodes_as_unknown() -> None:
    assert recorded("kunpeng920-cloud-1vcpu").details["numa_nodes"] is None


def test_aarch64_sockets_and_cores_come_from_sysfs_topology_like_lscpu(tmp_path: Path) -> None:
    # Hand-made tree: the real Kunpeng cpuinfo, plus topology files for 4 CPUs on 2 packages.
    (tmp_path / "proc").mkdir()
    cpuinfo = (FIXTURES / "kunpeng920-cloud-1vcpu" / "proc" / "cpuinfo").read_text()
    (tmp_path / "proc" / "cpuinfo").write_text("\n".join([cpuinfo] * 4))
    for cpu, (package, core) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        topology = tmp_path / "sys" / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")

    [cpu] = CpuDriver(tmp_path).discover()

    assert (cpu.details["sockets"], cpu.details["cores"], cpu.details["threads"]) == (2, 4, 4)


def test_unreadable_cpuinfo_still_gives_a_usable_cpu_that_says_what_is_unknown(
    tmp_path: Path,
) -> None:
    [cpu] = CpuDriver(tmp_path).discover()

    assert cpu.id == "cpu0"
    assert cpu.usable
    assert "ISA unknown (/proc/cpuinfo unreadable)" in cpu.reason


def test_live_cpu_record_matches_psutil() -> None:
    [cpu] = CpuDriver().discover()

    threads = psutil.cpu_count(logical=True)
    cores = psutil.cpu_count(logical=False) or cpu.details["cores"]
    assert (cpu.details["cores"], cpu.details["threads"]) == (cores, threads)
    assert cpu.memory_total_mib == psutil.virtual_memory().total // (1024 * 1024)
    assert cpu.details["llama_cpp_cpu_variant"] not in (None, "none")


def test_live_telemetry_samples_load_and_ram_of_this_machine() -> None:
    driver = CpuDriver()
    [cpu] = driver.discover()

    sample = driver.telemetry(cpu)

    assert sample.device_id == "cpu0"
    assert sample.utilization_pct is not None and 0.0 <= sample.utilization_pct <= 100.0
    assert sample.memory_total_mib == cpu.memory_total_mib
    assert sample.memory_used_mib is not None and 0 < sample.memory_used_mib <= cpu.memory_total_mib


class _Reading(NamedTuple):  # the shape of psutil's shwtemp
    label: str
    current: float
    high: float | None
    critical: float | None


def test_cpu_temperature_is_the_package_sensor_not_nvme_or_acpi() -> None:
    # psutil output from a real laptop (nschloe/tiptop#39, quoted in accelerators.md 5).
    readings = {
        "acpitz": [_Reading("", 44.0, 128.0, 128.0)],
        "nvme": [
            _Reading("Composite", 31.85, 84.85, 84.85),
            _Reading("Sensor 1", 31.85, 65261.85, 65261.85),
        ],
        "pch_skylake": [_Reading("", 43.0, None, None)],
        "coretemp": [
            _Reading("Package id 0", 44.0, 100.0, 100.0),
            _Reading("Core 0", 44.0, 100.0, 100.0),
        ],
    }

    assert cpu_temperature_c(readings) == 44.0


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ({}, None),  # a VM exposes no sensors (observed in accelerators.md 5)
        ({"nvme": [_Reading("Composite", 31.85, None, None)]}, None),
        (
            {"k10temp": [_Reading("Tctl", 75.0, None, None), _Reading("Tdie", 48.0, None, None)]},
            48.0,
        ),
        ({"coretemp": [_Reading("Package id 0", 65261.85, None, None)]}, None),
    ],
)
def test_cpu_temperature_edge_cases(
    readings: dict[str, list[_Reading]], expected: float | None
) -> None:
    assert cpu_temperature_c(readings) == expected
