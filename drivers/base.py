"""The `Driver` interface every accelerator adapter implements.

May import only `appliance.records` (and the standard library / vendor libraries).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from appliance.records import Accelerator, Telemetry


class Driver(ABC):
    """One vendor's adapter: finds its devices (inventory) and samples them (telemetry).

    Inventory and telemetry are separate calls so that a failing telemetry query never hides
    a device (GPUStack's rule): `discover()` is called at start and on hot-plug events,
    `telemetry()` on the telemetry cadence.
    """

    name: str
    """Short vendor key used in config and logs: `cpu`, `nvidia`, `ascend`."""

    @abstractmethod
    def discover(self) -> list[Accelerator]:
        """Return the devices this driver sees; an empty list when there are none.

        Must not raise for a missing or broken vendor stack: report the device with
        `usable=False` and a `reason` instead.
        """

    @abstractmethod
    def telemetry(self, device: Accelerator) -> Telemetry:
        """Sample one device discovered earlier by this driver."""

    def telemetry_all(self, devices: Sequence[Accelerator]) -> list[Telemetry]:
        """Sample several devices of this driver at once, in the order given.

        Override when one vendor call answers for every device (one `npu-smi info` run covers
        all NPUs); the default samples them one by one.
        """
        return [self.telemetry(device) for device in devices]
