"""The CPU fallback: one record for the whole box (`cpu0`), and its live load, RAM and heat.

May import only `appliance.records` and sibling helpers (`base`, `cpuinfo`), plus psutil.
Details keys (units in the names): `architecture`, `sockets`, `cores`, `threads`,
`numa_nodes` (None when sysfs does not say), `isa_flags`, `isa_level` (x86-64 psABI level;
None off x86), `llama_cpp_cpu_variant` (ggml's CPUID-based pick: a hint only; the runtime
self-test in appliance/runtime decides which variant really runs).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import psutil

from appliance.records import Accelerator, DeviceKind, Telemetry

from .base import Driver
from .cpuinfo import (
    CpuInfo,
    headline_isa,
    isa_flags_of_interest,
    llama_cpp_cpu_variant,
    parse_cpuinfo,
    x86_level,
)

MIB = 1024 * 1024
_NODE_DIR = re.compile(r"node\d+")
# hwmon chips that measure the CPU package itself, best first; others (acpitz, nvme, pch_*)
# measure something else and would mislead.
CPU_SENSOR_CHIPS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal")
_PLAUSIBLE_C = (0.0, 150.0)  # hwmon has bogus values (an NVMe "limit" of 65261.85 °C)


class _Reading(Protocol):
    label: str
    current: float


class CpuDriver(Driver):
    """Describes the host CPUs from /proc and /sys under `root`.

    `root="/"` reads this machine, and then counts and RAM come from psutil; any other root is
    a recorded tree (tests/fixtures/cpu/<name>/) and everything comes from its files.
    """

    name = "cpu"

    def __init__(self, root: str | Path = "/") -> None:
        self._root = Path(root)
        self._live = self._root == Path("/")
        if self._live:
            # psutil's first cpu_percent(None) returns a meaningless 0.0 and later calls report
            # usage since the previous call, so start the clock now (accelerators.md 5).
            psutil.cpu_percent(interval=None)

    def discover(self) -> list[Accelerator]:
        text = _read(self._root / "proc" / "cpuinfo")
        info = parse_cpuinfo(text or "")
        cores, threads = self._counts(info)
        variant = llama_cpp_cpu_variant(info) or "none"
        isa = headline_isa(info) if text else "ISA unknown (/proc/cpuinfo unreadable)"
        reason = (
            f"usable: {_plural(cores, 'core')} / {_plural(threads, 'thread')}, {isa}; "
            f"CPUID suggests llama.cpp's {variant} variant (the runtime self-test decides)"
        )
        return [
            Accelerator(
                id="cpu0",
                kind=DeviceKind.CPU,
                vendor=info.vendor,
                name=info.model_name,
                memory_total_mib=self._ram_total_mib(),
                usable=True,
                reason=reason,
                details={
                    "architecture": info.architecture,
                    "sockets": info.sockets or self._sysfs_packages() or 1,
                    "cores": cores,
                    "threads": threads,
                    "numa_nodes": self._numa_nodes(),
                    "isa_flags": isa_flags_of_interest(info),
                    "isa_level": x86_level(info),
                    "llama_cpp_cpu_variant": variant,
                },
            )
        ]

    def telemetry(self, device: Accelerator) -> Telemetry:
        """Live load of this machine (also for a recorded root: there is nothing to replay)."""
        memory = psutil.virtual_memory()
        return Telemetry(
            device_id=device.id,
            timestamp=time.time(),
            utilization_pct=psutil.cpu_percent(interval=None),
            # `available` counts reclaimable cache as free; `free` would look alarmingly low.
            memory_used_mib=(memory.total - memory.available) // MIB,
            memory_total_mib=memory.total // MIB,
            temperature_c=cpu_temperature_c(_sensor_readings()),
        )

    def _counts(self, info: CpuInfo) -> tuple[int, int]:
        """(physical cores, logical threads)."""
        threads = info.processors or 1
        cores = info.cores or self._sysfs_cores() or threads
        if self._live:
            # psutil can return None (e.g. cores on some ARM VMs); keep the file's answer then.
            threads = psutil.cpu_count(logical=True) or threads
            cores = psutil.cpu_count(logical=False) or cores
        return cores, threads

    def _ram_total_mib(self) -> int:
        if self._live:
            return psutil.virtual_memory().total // MIB
        match = re.search(
            r"^MemTotal:\s+(\d+) kB", _read(self._root / "proc" / "meminfo") or "", re.MULTILINE
        )
        return int(match.group(1)) // 1024 if match else 0

    def _numa_nodes(self) -> int | None:
        node_dir = self._root / "sys" / "devices" / "system" / "node"
        try:
            return sum(1 for entry in node_dir.iterdir() if _NODE_DIR.fullmatch(entry.name))
        except OSError:
            return None  # no NUMA sysfs (kernel without CONFIG_NUMA, or a recording without it)

    def _topology(self) -> set[tuple[str, str]]:
        """(package id, core id) per logical CPU, from sysfs: lscpu's source where
        /proc/cpuinfo has no `physical id` / `core id` (aarch64)."""
        pairs: set[tuple[str, str]] = set()
        cpus = self._root / "sys" / "devices" / "system" / "cpu"
        for topology in cpus.glob("cpu[0-9]*/topology"):
            package = _read(topology / "physical_package_id")
            core = _read(topology / "core_id")
            if package is not None and core is not None:
                pairs.add((package.strip(), core.strip()))
        return pairs

    def _sysfs_packages(self) -> int | None:
        # -1 means the firmware did not say (no ACPI PPTT on many ARM boards).
        return len({package for package, _ in self._topology() if package != "-1"}) or None

    def _sysfs_cores(self) -> int | None:
        return len(self._topology()) or None


def cpu_temperature_c(readings: Mapping[str, Sequence[_Reading]]) -> float | None:
    """Hottest plausible CPU package reading from `psutil.sensors_temperatures()` output."""
    for chip in CPU_SENSOR_CHIPS:
        entries = list(readings.get(chip, ()))
        # k10temp's Tctl carries a fan-control offset on some Ryzen/Threadripper parts;
        # Tdie, where present, is the real die temperature.
        tdie = [entry for entry in entries if entry.label == "Tdie"]
        low, high = _PLAUSIBLE_C
        values = [entry.current for entry in tdie or entries if low < entry.current < high]
        if values:
            return max(values)
    return None


def _sensor_readings() -> Mapping[str, Sequence[_Reading]]:
    sensors = getattr(psutil, "sensors_temperatures", None)  # absent on some platforms
    if sensors is None:
        return {}
    try:
        return sensors()
    except OSError:
        return {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
