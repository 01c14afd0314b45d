"""drivers/nvidia.py and drivers/ascend.py: PCI-gated skeletons that report honestly.

PCI ids are real: H100 SXM5 10de:2330, H200 10de:2335, H100 NVSwitch 10de:22a3
(accelerators.md 2.1), Ascend 910B 19e5:d802 (1.1), and the iBMC's VGA chip 19e5:1711 that
sits beside 910B cards on Huawei servers (tests/fixtures/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_sysfs import FakeSysfs

from appliance.drivers.ascend import AscendDriver
from appliance.drivers.nvidia import NvidiaDriver
from appliance.drivers.pci import VENDOR_HUAWEI, VENDOR_NVIDIA
from appliance.records import DeviceKind

VGA = 0x030000
THREE_D = 0x030200
HDMI_AUDIO = 0x040300
BRIDGE_OTHER = 0x068000
ACCELERATOR = 0x120000
ASPEED = 0x1A03


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys")


def test_box_without_nvidia_pci_device_has_no_nvidia_accelerator(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:cb:00.0", ASPEED, 0x2000, VGA, driver="ast")  # the BMC's VGA

    assert NvidiaDriver(sysfs.root).discover() == []


def test_h100_is_reported_unusable_with_an_honest_reason(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:3b:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver="nvidia", numa_node=0)

    [gpu] = NvidiaDriver(sysfs.root).discover()

    assert (gpu.id, gpu.kind, gpu.vendor) == ("nvidia0", DeviceKind.NVIDIA, "NVIDIA")
    assert gpu.usable is False
    assert gpu.pci_address == "0000:3b:00.0"
    assert gpu.reason.startswith("NVIDIA GPU found on PCI 0000:3b:00.0 (kernel driver nvidia);")
    assert "NVIDIA support (NVML) is not implemented in this version yet" in gpu.reason
    assert gpu.details["pci_id"] == "10de:2330"
    assert gpu.details["numa_node"] == 0


def test_nvidia_audio_and_nvswitch_functions_are_not_gpus(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:82:00.0", VENDOR_NVIDIA, 0x2331, THREE_D)
    sysfs.add_pci("0000:82:00.1", VENDOR_NVIDIA, 0x22BA, HDMI_AUDIO)
    sysfs.add_pci("0000:83:00.0", VENDOR_NVIDIA, 0x22A3, BRIDGE_OTHER)

    assert [gpu.pci_address for gpu in NvidiaDriver(sysfs.root).discover()] == ["0000:82:00.0"]


def test_gpus_are_numbered_in_pci_order(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:9a:00.0", VENDOR_NVIDIA, 0x2335, THREE_D)
    sysfs.add_pci("0000:1b:00.0", VENDOR_NVIDIA, 0x2335, THREE_D)

    found = NvidiaDriver(sysfs.root).discover()

    assert [(gpu.id, gpu.pci_address) for gpu in found] == [
        ("nvidia0", "0000:1b:00.0"),
        ("nvidia1", "0000:9a:00.0"),
    ]


def test_ascend_910b_is_reported_unusable_with_an_honest_reason(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR, driver="devdrv_device_driver")

    [npu] = AscendDriver(sysfs.root).discover()

    assert (npu.id, npu.kind, npu.vendor, npu.name) == (
        "ascend0",
        DeviceKind.ASCEND,
        "Huawei",
        "Ascend 910B",
    )
    assert npu.usable is False
    assert npu.reason == (
        "Ascend 910B NPU found on PCI 0000:c1:00.0 (kernel driver devdrv_device_driver); "
        "Ascend support (DCMI/CANN) is not implemented in this version yet, "
        "so models run on the CPU"
    )


def test_ibmc_vga_chip_is_not_taken_for_an_npu(sysfs: FakeSysfs) -> None:
    # Huawei's vendor id on a display-class function: the BMC's graphics, not an accelerator.
    sysfs.add_pci("0000:02:00.0", VENDOR_HUAWEI, 0x1711, VGA)
    sysfs.add_pci("0000:08:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR)

    found = AscendDriver(sysfs.root).discover()

    assert [npu.pci_address for npu in found] == ["0000:08:00.0"]
    assert NvidiaDriver(sysfs.root).discover() == []  # nor for a GPU, though its class is 0x03


def test_box_with_only_the_ibmc_vga_chip_has_no_npu(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:02:00.0", VENDOR_HUAWEI, 0x1711, VGA)

    assert AscendDriver(sysfs.root).discover() == []


def test_sriov_virtual_functions_are_not_counted_as_cards(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR)
    sysfs.add_pci("0000:c1:00.4", VENDOR_HUAWEI, 0xD802, ACCELERATOR, physfn="0000:c1:00.0")

    assert [npu.pci_address for npu in AscendDriver(sysfs.root).discover()] == ["0000:c1:00.0"]


def test_oem_branded_ascend_card_needs_the_accelerator_class(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:01:00.0", 0x20C6, 0xD500, ACCELERATOR)
    sysfs.add_pci("0000:02:00.0", 0x20C6, 0xD500, VGA)

    assert [npu.name for npu in AscendDriver(sysfs.root).discover()] == ["Ascend 310P"]


def test_stub_telemetry_carries_only_the_id_and_the_time(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:3b:00.0", VENDOR_NVIDIA, 0x2330, THREE_D)
    sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR)

    for driver in (NvidiaDriver(sysfs.root), AscendDriver(sysfs.root)):
        [device] = driver.discover()
        sample = driver.telemetry(device)
        assert sample.device_id == device.id
        assert sample.timestamp > 0
        assert sample.model_dump(exclude={"device_id", "timestamp"}, exclude_none=True) == {}
