"""How the console writes sizes, durations and times (one place, so every screen agrees).

Standard library only.
"""

from __future__ import annotations

import time


def human_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float | None) -> str:
    """`45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def clock(timestamp: float | None) -> str:
    """Local date and time, to the minute; `-` when never."""
    if not timestamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def clock_short(timestamp: float | None) -> str:
    """Month, day and time, for narrow tables; `-` when never."""
    if not timestamp:
        return "-"
    return time.strftime("%m-%d %H:%M", time.localtime(timestamp))


def clock_s(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def or_dash(value: object, suffix: str = "") -> str:
    return "-" if value is None or value == "" else f"{value}{suffix}"
