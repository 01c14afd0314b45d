"""Accelerator drivers and their registry: one `Driver` per vendor (CPU, NVIDIA, Ascend).

Installed as `appliance.drivers`. Modules here may import `appliance.records`, the standard
library and vendor libraries, and nothing else from the appliance; vendor modules never import
each other (shared helpers live in `base`, `pci`, `cpuinfo`). See drivers/README.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from appliance.records import Accelerator

from .ascend import AscendDriver
from .base import Driver
from .cpu import CpuDriver
from .nvidia import NvidiaDriver

__all__ = ["Driver", "all_drivers", "discover_all"]

log = logging.getLogger(__name__)


def all_drivers() -> list[Driver]:
    """One instance of every driver, reading this machine.

    Listing order only (accelerators, then the CPU); the planner, not this list, decides where
    a model goes.
    """
    return [NvidiaDriver(), AscendDriver(), CpuDriver()]


def discover_all(drivers: Iterable[Driver] | None = None) -> list[Accelerator]:
    """Every device every driver finds; a driver that raises is logged and yields nothing.

    One vendor's failure must never hide another vendor's devices (GPUStack's rule): a broken
    NVIDIA stack still leaves the CPU to serve. The traceback is logged at debug level only,
    so an administrator sees one line, and a developer can ask for the rest.
    """
    found: list[Accelerator] = []
    for driver in all_drivers() if drivers is None else drivers:
        name = getattr(driver, "name", type(driver).__name__)
        try:
            devices = driver.discover()
        except Exception as error:  # containment is the point: any error, one vendor
            log.warning("%s driver failed, its devices are not listed: %s", name, error)
            log.debug("%s driver failure", name, exc_info=True)
            continue
        found.extend(devices)
    return found
