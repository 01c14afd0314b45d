"""The cheap PCI inventory every vendor driver gates on: pyudev on the live box, sysfs for a tree.

Imports only the standard library and pyudev. No root, no vendor library and no udev daemon is
needed: libudev enumerates sysfs itself, so this works in containers that see the host's sysfs
(GPUStack's detector does the same scan, `gpustack_runtime/detector/__utils__.py`). pyudev is
the live path because umockdev can fake it (tests run the real code against described devices)
and the hot-plug monitor hands us pyudev devices; the plain sysfs reader stays for an explicit
`sys_root` (recorded or temporary trees) and for a box where libudev cannot be loaded.
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


def scan_pci(sys_root: str | Path | None = None) -> list[PciDevice]:
    """List the PCI functions, sorted by address: through pyudev when `sys_root` is None (this
    machine), else from `<sys_root>/bus/pci/devices`.

    A box without PCI sysfs (some containers) yields []. A function whose files cannot be
    read, for example one removed while we scan, is skipped rather than failing the scan.
    """
    if sys_root is None:
        found = _scan_udev()
        if found is not None:
            return found
        sys_root = "/sys"
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


def _scan_udev() -> list[PciDevice] | None:
    """None when libudev cannot be used at all (then the caller reads sysfs itself)."""
    try:
        import pyudev

        context = pyudev.Context()
        udev_devices = list(context.list_devices(subsystem="pci"))
    except Exception as error:  # ImportError, OSError from ctypes loading libudev.so.1
        log.debug("pyudev unavailable, reading sysfs directly: %s", error)
        return None
    found: list[PciDevice] = []
    for device in udev_devices:
        try:
            found.append(pci_from_udev(device))
        except (OSError, ValueError, KeyError) as error:
            log.debug("skipping PCI function %s: %s", device.sys_name, error)
    return sorted(found, key=lambda device: device.address)


def pci_from_udev(device: object) -> PciDevice:
    """A `PciDevice` from a pyudev `Device` of subsystem `pci` (enumerated or from a monitor)."""
    attributes = device.attributes  # type: ignore[attr-defined]
    sys_path = Path(device.sys_path)  # type: ignore[attr-defined]
    numa = attributes.get("numa_node")
    physfn = sys_path / "physfn"
    return PciDevice(
        address=device.sys_name,  # type: ignore[attr-defined]
        vendor_id=int(attributes.asstring("vendor").strip(), 16),
        device_id=int(attributes.asstring("device").strip(), 16),
        class_code=int(attributes.asstring("class").strip(), 16),
        driver=device.driver,  # type: ignore[attr-defined]
        numa_node=_numa(numa.decode() if numa else None),
        is_virtual_function=os.path.lexists(physfn),
    )


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
        return _numa(path.read_text())
    except OSError:
        return None


def _numa(text: str | None) -> int | None:
    try:
        node = int((text or "").strip())
    except ValueError:
        return None
    return node if node >= 0 else None
