"""Accelerator drivers and their registry: one `Driver` per vendor (CPU, NVIDIA, Ascend).

Installed as `appliance.drivers`. Modules here may import `appliance.records`, the standard
library and vendor libraries, and nothing else from the appliance; vendor modules never import
each other (shared helpers live in `base`, `pci`, `cpuinfo`). See drivers/README.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from appliance.records import Accelerator

from .ascend import AscendDriver
from .base import Driver
from .cpu import CpuDriver
from .nvidia import NvidiaDriver

__all__ = ["VENDORS", "Driver", "DriverFailed", "all_drivers", "discover_all"]

log = logging.getLogger(__name__)


VENDORS = ("auto", "cpu", "nvidia", "ascend")


class DriverFailed(RuntimeError):
    """The vendor the operator chose explicitly could not be read (see `discover_all`)."""


def all_drivers(
    choice: str = "auto",
    *,
    tool_timeout_s: float = 10.0,
    ascend_home: str | Path = "/usr/local/Ascend",
) -> list[Driver]:
    """The drivers for `choice` (config `devices.driver`), reading this machine.

    `auto` is every vendor; a vendor name is that vendor plus the CPU, which always stays as
    the fallback. Listing order only (accelerators, then the CPU); the planner, not this list,
    decides where a model goes.
    """
    if choice not in VENDORS:
        raise ValueError(f"unknown driver {choice!r}; expected one of {', '.join(VENDORS)}")
    drivers: list[Driver] = []
    if choice in ("auto", "nvidia"):
        drivers.append(NvidiaDriver(tool_timeout_s=tool_timeout_s))
    if choice in ("auto", "ascend"):
        drivers.append(AscendDriver(ascend_home=ascend_home, tool_timeout_s=tool_timeout_s))
    return [*drivers, CpuDriver()]


def discover_all(
    drivers: Iterable[Driver] | None = None, *, strict: str | None = None
) -> list[Accelerator]:
    """Every device every driver finds; a driver that raises is logged and yields nothing.

    One vendor's failure must never hide another vendor's devices (GPUStack's rule): a broken
    NVIDIA stack still leaves the CPU to serve. The traceback is logged at debug level only,
    so an administrator sees one line, and a developer can ask for the rest. The exception is
    `strict`, the vendor an operator chose by name: its failure raises `DriverFailed`, since
    silently serving from the CPU would hide exactly what they asked about.
    """
    found: list[Accelerator] = []
    for driver in all_drivers() if drivers is None else drivers:
        name = getattr(driver, "name", type(driver).__name__)
        try:
            devices = driver.discover()
        except Exception as error:  # containment is the point: any error, one vendor
            if name == strict:
                raise DriverFailed(f"the {name} driver failed: {error}") from error
            log.warning("%s driver failed, its devices are not listed: %s", name, error)
            log.debug("%s driver failure", name, exc_info=True)
            continue
        found.extend(devices)
    return found
