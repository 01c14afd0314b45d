"""Parsing `npu-smi info` tables and its `-t usages|board|health -i N` key/value blocks.

Imports only the standard library. The table layout differs per product and driver (23.x to
26.x: column widths, a `Chip Device` or `Chip Phy-ID` second header, `NA` or `-` values, glued
`31877/ 65536` pairs; accelerators.md 1.7), so rows are recognised by their content, not by
column positions. Anything unrecognisable is skipped; the caller decides what an empty result
means.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

HEALTH_WORDS = ("OK", "Warning", "Alarm", "Critical", "UNKNOWN")
_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_BANNER = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)")


@dataclass
class NpuChip:
    """One chip row pair of `npu-smi info`."""

    npu_id: int
    """The card id npu-smi uses for `-i`; sparse (0 and 64, or 2 and 4)."""
    chip_id: int
    name: str
    """`910B3`, `310P3`, `Ascend910` (910C)."""
    health: str
    bus_id: str
    """Lower-case like sysfs: `0000:c1:00.0`."""
    power_w: float | None
    temperature_c: float | None
    aicore_pct: float | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    """HBM where the table has an HBM pair (910 family), else DDR (310P)."""


@dataclass
class NpuInfo:
    driver_version: str | None
    chips: list[NpuChip]


def parse_info(text: str) -> NpuInfo:
    banner = _BANNER.search(text)
    rows = [_cells(line) for line in text.splitlines() if line.startswith("|")]
    chips = []
    for first, second in itertools.pairwise(rows):
        chip = _chip(first, second)
        if chip is not None:
            chips.append(chip)
    return NpuInfo(driver_version=banner.group(2) if banner else None, chips=chips)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _chip(first: list[str], second: list[str]) -> NpuChip | None:
    """A chip: `NPU Name | Health | Power Temp ...`, then `Chip [..] | Bus-Id | AICore Memory`."""
    if len(first) < 3 or len(second) < 3:
        return None
    head, health, metrics = first[0].split(), first[1], first[2].split()
    if len(head) != 2 or not head[0].isdigit() or health not in HEALTH_WORDS:
        return None
    chip_cell, bus_id = second[0].split(), second[1]
    if not chip_cell or not chip_cell[0].isdigit() or not _BUS_ID.match(bus_id):
        return None
    pairs = _PAIR.findall(second[2])
    used, total = (int(pairs[-1][0]), int(pairs[-1][1])) if pairs else (None, None)
    usage = second[2].split()
    return NpuChip(
        npu_id=int(head[0]),
        chip_id=int(chip_cell[0]),
        name=head[1],
        health=health,
        bus_id=bus_id.lower(),
        power_w=_number(metrics[0]) if metrics else None,
        temperature_c=_number(metrics[1]) if len(metrics) > 1 else None,
        aicore_pct=_number(usage[0]) if usage else None,
        memory_used_mib=used,
        memory_total_mib=total,
    )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # `NA`, `-`


def parse_blocks(text: str) -> list[dict[str, str]]:
    """`Key : Value` lines of `npu-smi info -t ...`, split into one dict per chip block.

    A new block starts when a key repeats (the `usages` form ends each chip with `Chip ID`,
    the `common` form starts with it; accelerators.md 1.7.6), so both shapes split correctly.
    """
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            continue
        key, value = key.strip(), value.strip()
        if key in blocks[-1]:
            blocks.append({})
        blocks[-1][key] = value
    return [block for block in blocks if block]


def board_versions(text: str) -> dict[str, str]:
    """Driver (`Software Version`) and firmware version from `npu-smi info -t board -i N`."""
    found: dict[str, str] = {}
    for block in parse_blocks(text):
        for key, name in (("Software Version", "driver"), ("Firmware Version", "firmware")):
            value = block.get(key, "")
            if value and value not in ("NA", "xxx") and name not in found:
                found[name] = value
    return found


def health_detail(text: str) -> str | None:
    """`Health, Error Code, Error Information` from `npu-smi info -t health -i N`, one line."""
    for block in parse_blocks(text):
        if "Health" in block:
            code = block.get("Error Code", "NA")
            info = block.get("Error Information", "NA")
            extra = "" if code == "NA" else f", error code {code}: {info}"
            return f"health {block['Health']}{extra}"
    return None


def usages_memory(text: str) -> tuple[int, float] | None:
    """(capacity MiB, usage %) of HBM, else DDR, from `npu-smi info -t usages -i N` (first
    chip): the fallback when the table shows no memory pair."""
    for block in parse_blocks(text):
        for kind in ("HBM", "DDR"):
            capacity = block.get(f"{kind} Capacity(MB)")
            rate = block.get(f"{kind} Usage Rate(%)")
            if capacity and capacity.isdigit() and int(capacity) > 0 and rate:
                return int(capacity), float(rate)
    return None
