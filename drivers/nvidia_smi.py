"""Reading NVIDIA GPUs through `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`.

Imports only the standard library and `tools`. The fallback when NVML cannot be loaded from
Python but the tool works (a driver install without a matching libnvidia-ml in our path, or a
container that mounts the tool only).
"""

from __future__ import annotations

from dataclasses import dataclass

from .nvml import normalise_bus_id
from .tools import ToolResult, run_tool

# `name` goes last: it is the one free-text field, and a product name may contain ", "
# (accelerators.md 2.4), so everything left over after the fixed fields belongs to it.
FIELDS = (
    "index",
    "pci.bus_id",
    "uuid",
    "memory.total",
    "memory.used",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "driver_version",
    "name",
)
_MISSING = {"", "N/A", "[N/A]", "[Not Supported]", "Not Supported", "[Unknown Error]"}


@dataclass
class SmiGpu:
    index: int
    bus_id: str
    uuid: str
    name: str
    driver_version: str | None
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None


def query(timeout_s: float) -> tuple[list[SmiGpu], str]:
    """(GPUs, "") or ([], why the tool's answer cannot be used)."""
    result: ToolResult = run_tool(
        ["nvidia-smi", f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"],
        timeout_s,
    )
    if not result.ok:
        return [], result.problem
    gpus = parse_csv(result.stdout)
    if not gpus:
        return [], "nvidia-smi answered, but no GPU line could be read from its output"
    return gpus, ""


def parse_csv(text: str) -> list[SmiGpu]:
    """Lines that do not have the expected shape are skipped (garbled output yields [])."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(", ")]
        if len(parts) < len(FIELDS) or not parts[0].isdigit():
            continue
        fixed, name = parts[: len(FIELDS) - 1], ", ".join(parts[len(FIELDS) - 1 :])
        values = dict(zip(FIELDS, [*fixed, name], strict=True))
        try:
            gpus.append(
                SmiGpu(
                    index=int(values["index"]),
                    bus_id=normalise_bus_id(values["pci.bus_id"]),
                    uuid=values["uuid"],
                    name=name,
                    driver_version=_str(values["driver_version"]),
                    memory_total_mib=_int(values["memory.total"]),
                    memory_used_mib=_int(values["memory.used"]),
                    utilization_pct=_float(values["utilization.gpu"]),
                    temperature_c=_float(values["temperature.gpu"]),
                    power_w=_float(values["power.draw"]),
                    power_limit_w=_float(values["power.limit"]),
                )
            )
        except ValueError:
            continue
    return gpus


def _str(value: str) -> str | None:
    return None if value in _MISSING else value


def _float(value: str) -> float | None:
    return None if value in _MISSING else float(value)


def _int(value: str) -> int | None:
    number = _float(value)
    return None if number is None else int(number)
