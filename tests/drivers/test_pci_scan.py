"""drivers/pci.py: the sysfs PCI scan every vendor driver gates on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_sysfs import FakeSysfs

from appliance.drivers.pci import VENDOR_HUAWEI, VENDOR_NVIDIA, scan_pci


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys")


def test_scan_reads_vendor_device_and_class_from_sysfs(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:9a:00.0", VENDOR_NVIDIA, 0x2335, 0x030200, driver="nvidia", numa_node=1)

    [gpu] = scan_pci(sysfs.root)

    assert gpu.address == "0000:9a:00.0"
    assert (gpu.vendor_id, gpu.device_id, gpu.class_code) == (0x10DE, 0x2335, 0x030200)
    assert gpu.pci_id == "10de:2335"
    assert gpu.base_class == 0x03
    assert gpu.driver == "nvidia"
    assert gpu.numa_node == 1
    assert not gpu.is_virtual_function


def test_scan_lists_functions_in_address_order(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, 0x120000)
    sysfs.add_pci("0000:01:00.0", VENDOR_HUAWEI, 0xD802, 0x120000)

    assert [device.address for device in scan_pci(sysfs.root)] == ["0000:01:00.0", "0000:c1:00.0"]


def test_unbound_function_has_no_driver_and_unknown_numa_node(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:18:00.0", VENDOR_HUAWEI, 0xD802, 0x120000)

    [npu] = scan_pci(sysfs.root)

    assert npu.driver is None
    assert npu.numa_node is None  # the kernel writes -1 when it does not know


def test_sriov_virtual_function_is_marked_as_such(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, 0x120000)
    sysfs.add_pci("0000:c1:00.4", VENDOR_HUAWEI, 0xD802, 0x120000, physfn="0000:c1:00.0")

    flags = {device.address: device.is_virtual_function for device in scan_pci(sysfs.root)}

    assert flags == {"0000:c1:00.0": False, "0000:c1:00.4": True}


def test_function_with_unreadable_files_is_skipped_not_fatal(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, 0x030200)
    broken = sysfs.add_pci("0000:07:00.0", VENDOR_NVIDIA, 0x2330, 0x030200)
    (broken / "class").unlink()  # as if the device vanished halfway through the scan

    assert [device.address for device in scan_pci(sysfs.root)] == ["0000:06:00.0"]


def test_box_without_pci_sysfs_has_no_pci_devices(tmp_path: Path) -> None:
    assert scan_pci(tmp_path / "no-sys-here") == []
