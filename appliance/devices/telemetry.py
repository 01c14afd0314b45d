"""The telemetry cache: the last sample and a short history per device, for the API and TUI.

May import records only. Thread-safe, since the sampling runs in a worker thread (vendor
tools block) while the API reads from the event loop (Home Assistant's coordinator: one
poller per cadence, everyone reads the cache).
"""

from __future__ import annotations

import threading
from collections import deque

from appliance.records import Telemetry


class TelemetryCache:
    def __init__(self, history_length: int = 150) -> None:
        self._length = history_length
        self._history: dict[str, deque[Telemetry]] = {}
        self._lock = threading.Lock()

    def record(self, sample: Telemetry) -> None:
        with self._lock:
            history = self._history.setdefault(sample.device_id, deque(maxlen=self._length))
            history.append(sample)

    def latest(self) -> dict[str, Telemetry]:
        with self._lock:
            return {device: history[-1] for device, history in self._history.items() if history}

    def history(self, device_id: str | None = None) -> dict[str, list[Telemetry]]:
        with self._lock:
            return {
                device: list(history)
                for device, history in self._history.items()
                if device_id in (None, device)
            }

    def keep_only(self, device_ids: set[str]) -> None:
        """Forget devices that are gone, so a removed GPU's last sample is not shown as live."""
        with self._lock:
            for device in set(self._history) - device_ids:
                del self._history[device]
