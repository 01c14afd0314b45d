"""DeviceManager: the daemon's one cache of what hardware the box has, and how it is doing.

May import drivers, records, config, errors; never the API, engines, store or UI. The API, the
metrics and the TUI read this cache; nothing else calls a driver (one poller per cadence,
STYLE.md habit 7). Inventory is refreshed at start and on udev events (or a slow rescan where
udev is silent), telemetry every `devices.telemetry_interval_s`; changes go to subscribers as
`DeviceEvent`s, in the thread that noticed them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

from appliance.config import Config
from appliance.drivers import DriverFailed, all_drivers, discover_all
from appliance.drivers.base import Driver
from appliance.records import (
    Accelerator,
    DeviceEvent,
    DeviceKind,
    RuntimeReport,
    Telemetry,
)

from .hotplug import UdevChange, UdevWatcher, udev_active
from .runtimes import probe_runtimes
from .telemetry import TelemetryCache

__all__ = ["DeviceManager", "DriverFailed"]

log = logging.getLogger("appliance.devices")

Subscriber = Callable[[DeviceEvent], None]

_RUNTIME_FOR = {
    DeviceKind.NVIDIA: ("cuda", "CUDA", "NVIDIA GPU"),
    DeviceKind.ASCEND: ("cann", "CANN", "Ascend NPU"),
}


def needed_runtime(devices: list[Accelerator], report: RuntimeReport) -> str | None:
    """Which llama.cpp build this box's usable accelerators need, when another is installed."""
    for kind, (build, backend, what) in _RUNTIME_FOR.items():
        count = sum(1 for d in devices if d.kind == kind and d.usable)
        if count and backend not in report.llama_cpp_backends:
            installed = report.llama_cpp_runtime or "no"
            return (
                f"this box has {count} usable {what}(s) but the {installed} build of llama.cpp "
                f"is installed: install the {build} runtime (ai-appliance-runtime-{build}) to "
                "run models on them"
            )
    return None


def idle_runtime(devices: list[Accelerator], report: RuntimeReport) -> str | None:
    """Why an installed accelerator build runs everything on the CPU: none of its devices."""
    for kind, (build, _backend, what) in _RUNTIME_FOR.items():
        if report.llama_cpp_runtime == build and not any(
            d.kind == kind and d.usable for d in devices
        ):
            return (
                f"the {build} build of llama.cpp is installed (ai-appliance-runtime-{build}), but "
                f"this box has no usable {what}: models run on the CPU. If the box has one, "
                "its driver is missing or not loaded (appliance devices says why); otherwise "
                f"remove ai-appliance-runtime-{build}"
            )
    return None


RESCAN_S = 30.0  # where udev is silent; PCI accelerators rarely come and go, so this is plenty


class DeviceManager:
    def __init__(
        self,
        drivers: Sequence[Driver] | None = None,
        *,
        strict: str | None = None,
        history_length: int = 150,
        runtime_probe: Callable[[], RuntimeReport] = probe_runtimes,
    ) -> None:
        self._drivers = list(drivers) if drivers is not None else all_drivers()
        self._strict = strict
        self._by_driver: list[tuple[Driver, list[Accelerator]]] = []
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._probe = runtime_probe
        self._probing = threading.Lock()
        self._runtimes: RuntimeReport | None = None
        self.cache = TelemetryCache(history_length)

    @classmethod
    def from_config(cls, config: Config) -> DeviceManager:
        settings = config.devices
        drivers = all_drivers(
            settings.driver,
            tool_timeout_s=settings.tool_timeout_s,
            ascend_home=settings.ascend_home,
        )
        strict = None if settings.driver in ("auto", "cpu") else settings.driver
        return cls(
            drivers,
            strict=strict,
            history_length=settings.history_length,
            runtime_probe=lambda: probe_runtimes(config),
        )

    # Inventory ----------------------------------------------------------------------------

    def refresh(self) -> list[DeviceEvent]:
        """Run discovery on every driver, replace the inventory, emit what changed.

        Raises `DriverFailed` when the operator's chosen vendor fails or finds nothing.
        """
        with self._refreshing:  # a udev burst must not run two discoveries side by side
            found = [(d, discover_all([d], strict=self._strict)) for d in self._drivers]
            if self._strict and not any(devs for d, devs in found if d.name == self._strict):
                raise DriverFailed(
                    f"devices.driver is {self._strict!r}, but that driver found no device; "
                    "check the card is seated and its driver installed, or set devices.driver "
                    "= 'auto'"
                )
            with self._lock:
                before = {_key(d): d for _, devs in self._by_driver for d in devs}
                self._by_driver = found
            after = {_key(d): d for _, devs in found for d in devs}
            self.cache.keep_only({d.id for d in after.values()})
        events = _diff(before, after)
        # A journal shows changes, not heartbeats: the periodic rescan logs only what changed.
        level = logging.INFO if events or not before else logging.DEBUG
        log.log(
            level, "devices: %s", ", ".join(f"{d.id} ({d.name})" for d in after.values()) or "none"
        )
        for event in events:
            self._emit(event)
        return events

    def devices(self) -> list[Accelerator]:
        with self._lock:
            return [device.model_copy() for _, devs in self._by_driver for device in devs]

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` on every change; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: DeviceEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("device event subscriber failed on %s", event.action)

    # Runtimes and placement ------------------------------------------------------------------

    def runtimes_if_probed(self) -> RuntimeReport | None:
        """The runtime report if the probe has run; never waits for it (status pages)."""
        report = self._runtimes
        return None if report is None else self._with_needed_runtime(report)

    def runtimes(self, refresh: bool = False) -> RuntimeReport:
        """What llama.cpp and onnxruntime can use; probed once, in a child process, on demand."""
        # One probe at a time: at boot the first model load and the boot task ask together,
        # and the probe starts a process that loads llama.cpp; the second caller gets its answer.
        with self._probing:
            if self._runtimes is None or refresh:
                self._runtimes = self._probe()
            report = self._runtimes
        return self._with_needed_runtime(report)

    def _with_needed_runtime(self, report: RuntimeReport) -> RuntimeReport:
        """A copy of the cached report, told which runtime this box's accelerators need now."""
        report = report.model_copy()
        devices = self.devices()
        report.needed_runtime = needed_runtime(devices, report)
        idle = idle_runtime(devices, report)
        if idle:
            report.notes = [*report.notes, idle]
        return report

    # Telemetry ---------------------------------------------------------------------------------

    def sample_once(self) -> dict[str, Telemetry]:
        """Sample every device once into the cache. A failing driver keeps its devices listed
        and marks their samples unavailable (GPUStack: inventory survives telemetry errors)."""
        with self._lock:
            groups = [(driver, list(devs)) for driver, devs in self._by_driver if devs]
        for driver, devs in groups:
            try:
                samples = driver.telemetry_all(devs)
            except Exception as error:
                log.debug("%s telemetry failed", driver.name, exc_info=True)
                samples = [
                    _unavailable(d, f"{driver.name} telemetry failed: {error}") for d in devs
                ]
            for sample in samples:
                self.cache.record(sample)
        return self.cache.latest()

    def telemetry(self) -> dict[str, Telemetry]:
        return self.cache.latest()

    def history(self, device_id: str | None = None) -> dict[str, list[Telemetry]]:
        return self.cache.history(device_id)

    # The daemon's loop -------------------------------------------------------------------------

    async def run(self, interval_s: float, *, hotplug: bool = True) -> None:
        """Sample every `interval_s`; follow udev (or rescan) until cancelled."""
        loop = asyncio.get_running_loop()
        watcher = UdevWatcher(lambda change: loop.create_task(self.on_udev(change)))
        watching = hotplug and watcher.start(loop)
        polling = hotplug and not (watching and udev_active())
        last_scan = time.monotonic()
        try:
            while True:
                await asyncio.to_thread(self.sample_once)
                if polling and time.monotonic() - last_scan > RESCAN_S:
                    last_scan = time.monotonic()
                    await self._refresh_logged()
                await asyncio.sleep(interval_s)
        finally:
            watcher.stop()

    async def on_udev(self, change: UdevChange) -> None:
        if change.subsystem == "pci":
            await self._refresh_logged()
        elif change.usb:
            action = "added" if change.action == "add" else "removed"
            self._emit(
                DeviceEvent(
                    action=action,
                    subsystem="block",
                    sys_path=change.sys_path,
                    devnode=change.devnode,
                    timestamp=time.time(),
                )
            )

    async def _refresh_logged(self) -> None:
        try:
            await asyncio.to_thread(self.refresh)
        except DriverFailed as error:  # keep the last inventory; say why, every time
            log.error("devices: %s", error)


def _key(device: Accelerator) -> str:
    return f"{device.kind}:{device.pci_address or device.id}"


def _diff(before: dict[str, Accelerator], after: dict[str, Accelerator]) -> list[DeviceEvent]:
    gone = [_event("removed", before[key]) for key in before.keys() - after.keys()]
    came = [_event("added", after[key]) for key in after.keys() - before.keys()]
    changed = [
        _event("changed", after[key])
        for key in after.keys() & before.keys()
        if (before[key].usable, before[key].reason) != (after[key].usable, after[key].reason)
    ]
    # Removals first: a model on a lost GPU is failed before anything else reacts.
    return sorted(gone, key=_by_id) + sorted(came, key=_by_id) + sorted(changed, key=_by_id)


def _event(action: str, device: Accelerator) -> DeviceEvent:
    return DeviceEvent(
        action=action,
        subsystem="pci" if device.pci_address else "cpu",
        device_id=device.id,
        sys_path=device.pci_address or "",
        device=device,
        timestamp=time.time(),
    )


def _by_id(event: DeviceEvent) -> str:
    return event.device_id or ""


def _unavailable(device: Accelerator, why: str) -> Telemetry:
    return Telemetry(device_id=device.id, timestamp=time.time(), available=False, error=why)
