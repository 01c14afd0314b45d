"""Huawei Ascend NPUs: found by the PCI gate, reported honestly until DCMI support lands.

May import only `appliance.records` and sibling helpers (`base`, `pci`), never another vendor.
This version finds Ascend NPUs on the PCI bus by device id and reports each one as not usable,
with a reason that says so; inventory through DCMI (chips per card, HBM, driver and CANN
versions) and telemetry are the next step (see drivers/README.md).
"""

from __future__ import annotations

import time
from pathlib import Path

from appliance.records import Accelerator, DeviceKind, Telemetry

from .base import Driver
from .pci import (
    CLASS_ACCELERATOR,
    CLASS_PROCESSOR,
    VENDOR_HUAWEI,
    PciDevice,
    scan_pci,
)

# NPU device ids from the Ascend driver's PCI tables (mirror `verylucky01/driver`,
# `dcmi_common.h` and `devdrv_pci.h`; see shared/reference/accelerators.md 1.1). Matching by
# device id matters: Huawei's vendor id also covers NICs, SSDs and the iBMC's VGA chip
# (19e5:1711), none of which can run a model.
NPU_CHIPS: dict[int, str] = {
    0xD100: "Ascend 310",
    0xD105: "Ascend 310B",
    0xD500: "Ascend 310P",
    0xD501: "Ascend 310P",  # 2P variant
    0xD801: "Ascend 910",
    0xD802: "Ascend 910B",
    0xD803: "Ascend 910C",
    0xD804: "Ascend 910B",  # 2P variant
    0xD805: "Ascend 910B",  # virtual function, seen as a device inside a VM
    0xD806: "Ascend 950",
    0xD807: "Ascend (unreleased part d807)",
    0xD808: "Ascend (unreleased part d808)",
}

# OEM-branded cards carry other vendor ids with the same device ids (the driver binds 0x20C6,
# 0x203F and 0x20E9, `xsmem_modprobe_adapt.c`); for those the accelerator class is required too,
# since a foreign vendor's device id says nothing on its own.
OEM_VENDORS = frozenset({0x20C6, 0x203F, 0x20E9})
NPU_CLASSES = frozenset({CLASS_ACCELERATOR, CLASS_PROCESSOR})


def is_ascend_npu(device: PciDevice) -> bool:
    """An Ascend NPU function (physical functions only, so that a card counts once)."""
    if device.is_virtual_function or device.device_id not in NPU_CHIPS:
        return False
    if device.vendor_id == VENDOR_HUAWEI:
        return True
    return device.vendor_id in OEM_VENDORS and device.base_class in NPU_CLASSES


class AscendDriver(Driver):
    """Reports Ascend NPUs seen on PCI; `usable=False` until DCMI support is written."""

    name = "ascend"

    def __init__(self, sys_root: str | Path = "/sys") -> None:
        self._sys_root = Path(sys_root)

    def discover(self) -> list[Accelerator]:
        npus = [device for device in scan_pci(self._sys_root) if is_ascend_npu(device)]
        return [_stub_record(index, npu) for index, npu in enumerate(npus)]

    def telemetry(self, device: Accelerator) -> Telemetry:
        # Nothing can be sampled without DCMI; an empty sample says so without raising.
        return Telemetry(device_id=device.id, timestamp=time.time())


def _stub_record(index: int, npu: PciDevice) -> Accelerator:
    chip = NPU_CHIPS[npu.device_id]
    bound = f"kernel driver {npu.driver}" if npu.driver else "no kernel driver bound"
    return Accelerator(
        # PCI order, not the npu-smi card id (those are sparse: 0 and 64, or 2 and 4).
        id=f"ascend{index}",
        kind=DeviceKind.ASCEND,
        vendor="Huawei",
        name=chip,
        usable=False,
        reason=(
            f"{chip} NPU found on PCI {npu.address} ({bound}); Ascend support (DCMI/CANN) is "
            "not implemented in this version yet, so models run on the CPU"
        ),
        pci_address=npu.address,
        details={
            "pci_id": npu.pci_id,
            "pci_class": f"0x{npu.class_code:06x}",
            "kernel_driver": npu.driver,
            "numa_node": npu.numa_node,
        },
    )
