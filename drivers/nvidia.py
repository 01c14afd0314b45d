"""NVIDIA GPUs: found by the PCI gate, reported honestly until NVML support lands.

May import only `appliance.records` and sibling helpers (`base`, `pci`), never another vendor.
This version finds NVIDIA GPUs on the PCI bus and reports each one as not usable, with a
reason that says so; inventory through NVML (name, memory, driver and CUDA versions) and
telemetry are the next step (see drivers/README.md).
"""

from __future__ import annotations

import time
from pathlib import Path

from appliance.records import Accelerator, DeviceKind, Telemetry

from .base import Driver
from .pci import CLASS_DISPLAY, VENDOR_NVIDIA, PciDevice, scan_pci


def is_nvidia_gpu(device: PciDevice) -> bool:
    """A GPU function of an NVIDIA card, as opposed to its HDMI audio (class 0x0403) or an
    NVSwitch bridge (0x0680), which share the vendor id.

    SR-IOV virtual functions are left out so that one card counts once on a host; a VF passed
    into a VM has no `physfn` link there and is seen as the GPU it is.
    """
    return (
        device.vendor_id == VENDOR_NVIDIA
        and device.base_class == CLASS_DISPLAY
        and not device.is_virtual_function
    )


class NvidiaDriver(Driver):
    """Reports NVIDIA GPUs seen on PCI; `usable=False` until NVML support is written."""

    name = "nvidia"

    def __init__(self, sys_root: str | Path = "/sys") -> None:
        self._sys_root = Path(sys_root)

    def discover(self) -> list[Accelerator]:
        gpus = [device for device in scan_pci(self._sys_root) if is_nvidia_gpu(device)]
        return [_stub_record(index, gpu) for index, gpu in enumerate(gpus)]

    def telemetry(self, device: Accelerator) -> Telemetry:
        # Nothing can be sampled without NVML; an empty sample says so without raising.
        return Telemetry(device_id=device.id, timestamp=time.time())


def _stub_record(index: int, gpu: PciDevice) -> Accelerator:
    bound = f"kernel driver {gpu.driver}" if gpu.driver else "no kernel driver bound"
    return Accelerator(
        id=f"nvidia{index}",
        kind=DeviceKind.NVIDIA,
        vendor="NVIDIA",
        # Without NVML (or a pci.ids lookup) the product name is unknown; the PCI id is exact.
        name=f"NVIDIA GPU [{gpu.pci_id}]",
        usable=False,
        reason=(
            f"NVIDIA GPU found on PCI {gpu.address} ({bound}); NVIDIA support (NVML) is not "
            "implemented in this version yet, so models run on the CPU"
        ),
        pci_address=gpu.address,
        details={
            "pci_id": gpu.pci_id,
            "pci_class": f"0x{gpu.class_code:06x}",
            "kernel_driver": gpu.driver,
            "numa_node": gpu.numa_node,
        },
    )
