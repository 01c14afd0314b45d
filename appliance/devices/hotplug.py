"""udev hot-plug: PCI functions (accelerators) and USB disks coming and going.

May import the standard library and pyudev only. The monitor's socket is read on the event
loop (`add_reader`), so no thread is needed and a callback runs where the daemon's state lives.
Without udevd (containers), libudev's "udev" monitor binds to nothing and stays silent
(accelerators.md 4); `udev_active()` tells the device manager to poll instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("appliance.devices")

PCI_ACTIONS = frozenset({"add", "remove", "bind", "unbind", "change"})


@dataclass(frozen=True)
class UdevChange:
    action: str
    subsystem: str
    """`pci` or `block`."""
    sys_path: str
    devnode: str | None = None
    usb: bool = False
    """For `block`: the disk hangs off a USB bus (the model-import issue wants those)."""


def udev_active() -> bool:
    """Whether udev events can arrive: udevd runs, or umockdev fakes the netlink socket."""
    return Path("/run/udev/control").exists() or "UMOCKDEV_DIR" in os.environ


def change_from_udev(device: Any) -> UdevChange | None:
    """The part of a pyudev event we act on; None for events we ignore."""
    action = device.action or ""
    if device.subsystem == "pci" and action in PCI_ACTIONS:
        return UdevChange(action, "pci", device.sys_path)
    if device.subsystem == "block" and action in ("add", "remove"):
        usb = device.properties.get("ID_BUS") == "usb" or "/usb" in device.sys_path
        return UdevChange(action, "block", device.sys_path, device.device_node, usb)
    return None


class UdevWatcher:
    """Calls `on_change` on the event loop for every PCI event and every block event."""

    def __init__(self, on_change: Callable[[UdevChange], None]) -> None:
        self._on_change = on_change
        self._monitor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start listening; False (logged) when libudev cannot give us a monitor."""
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="udev")
            monitor.filter_by("pci")
            monitor.filter_by("block")
            monitor.start()
        except Exception as error:  # no libudev, no netlink permission
            log.warning("hot-plug: cannot watch udev (%s); rescanning periodically instead", error)
            return False
        self._monitor, self._loop = monitor, loop
        loop.add_reader(monitor.fileno(), self._drain)
        return True

    def stop(self) -> None:
        if self._monitor is not None and self._loop is not None:
            self._loop.remove_reader(self._monitor.fileno())
        self._monitor = None

    def _drain(self) -> None:
        while self._monitor is not None:
            try:
                device = self._monitor.poll(timeout=0)
            except Exception as error:  # a truncated netlink message must not kill the loop
                log.debug("hot-plug: unreadable udev event: %s", error)
                return
            if device is None:
                return
            change = change_from_udev(device)
            if change is not None:
                self._on_change(change)
