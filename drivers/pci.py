"""A cheap PCI inventory read straight from sysfs: the gate every vendor driver passes first.

Imports only the standard library. No root, no vendor library and no udev daemon is needed,
so it works in containers that see the host's sysfs (GPUStack's detector does the same scan,
`gpustack_runtime/detector/__utils__.py:get_pci_devices`). The device manager will move this
to pyudev; `scan_pci(sys_root)` returning `PciDevice` records is the shape to keep.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VENDOR_NVIDIA = 0x10DE
VENDOR_HUAWEI = 0x19E5

CLASS_DISPLAY = 0x03
"""PCI base class 0x03: VGA (0x0300) and 3D (0x0302) controllers."""
CLASS_PROCESSOR = 0x0B
CLASS_ACCELERATOR = 0x12
"""PCI base class 0x12: processing accelerators (Ascend NPUs)."""


@dataclass(frozen=True)
class PciDevice:
    """One PCI function as sysfs describes it."""

    address: str
    """Bus/device/function with domain, e.g. `0000:3b:00.0`."""
    vendor_id: int
    device_id: int
    class_code: int
    """24-bit class code, e.g. 0x030200 (3D controller), 0x120000 (processing accelerator)."""
    driver: str | None = None
    """Name of the bound kernel driver (`nvidia`, `devdrv_device_driver`), None when unbound."""
    numa_node: int | None = None
    """NUMA node the slot hangs off; None where the kernel reports -1 (unknown)."""
    is_virtual_function: bool = False
    """True for an SR-IOV virtual function (it has a `physfn` link): not a card of its own."""

    @property
    def base_class(self) -> int:
        return self.class_code >> 16

    @property
    def pci_id(self) -> str:
        """`vvvv:dddd` as `lspci -nn` prints it."""
        return f"{self.vendor_id:04x}:{self.device_id:04x}"


def scan_pci(sys_root: str | Path = "/sys") -> list[PciDevice]:
    """List the PCI functions under `<sys_root>/bus/pci/devices`, sorted by address.

    A box without PCI sysfs (some containers) yields []. A function whose files cannot be
    read, for example one removed while we scan, is skipped rather than failing the scan.
    """
    devices_dir = Path(sys_root) / "bus" / "pci" / "devices"
    try:
        entries = sorted(devices_dir.iterdir())
    except OSError as error:
        log.debug("no PCI sysfs at %s: %s", devices_dir, error)
        return []
    found: list[PciDevice] = []
    for entry in entries:
        try:
            found.append(_read_device(entry))
        except (OSError, ValueError) as error:
            log.debug("skipping PCI function %s: %s", entry.name, error)
    return found


def _read_device(entry: Path) -> PciDevice:
    driver_link = entry / "driver"
    # The `driver` link points at /sys/bus/pci/drivers/<name>; read the link rather than
    # following it, so that recorded trees with dangling links read the same.
    driver = Path(os.readlink(driver_link)).name if driver_link.is_symlink() else None
    physfn = entry / "physfn"
    return PciDevice(
        address=entry.name,
        vendor_id=_read_hex(entry / "vendor"),
        device_id=_read_hex(entry / "device"),
        class_code=_read_hex(entry / "class"),
        driver=driver,
        numa_node=_read_numa_node(entry / "numa_node"),
        is_virtual_function=physfn.is_symlink() or physfn.exists(),
    )


def _read_hex(path: Path) -> int:
    return int(path.read_text().strip(), 16)


def _read_numa_node(path: Path) -> int | None:
    try:
        node = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None
