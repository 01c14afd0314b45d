"""DeviceManager: the daemon's one cache of what hardware the box has.

May import drivers, records, config, errors; never the API, engines, store or UI. The API, the
metrics and the TUI read this cache; nothing else calls a driver (one poller per cadence).
The device-manager issue adds the telemetry loop and udev hot-plug events here.
"""

from __future__ import annotations

import logging
import threading

from appliance.drivers import discover_all
from appliance.drivers.base import Driver
from appliance.records import Accelerator

log = logging.getLogger("appliance.devices")


class DeviceManager:
    def __init__(self, drivers: list[Driver] | None = None) -> None:
        self._drivers = drivers
        self._devices: list[Accelerator] = []
        self._lock = threading.Lock()

    def refresh(self) -> list[Accelerator]:
        """Run discovery on every driver and replace the cached inventory."""
        found = discover_all(self._drivers)
        with self._lock:
            self._devices = found
        log.info("devices: %s", ", ".join(f"{d.id} ({d.name})" for d in found) or "none")
        return found

    def devices(self) -> list[Accelerator]:
        with self._lock:
            return [device.model_copy() for device in self._devices]
