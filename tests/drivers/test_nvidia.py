"""drivers/nvidia.py: PCI gate, then NVML (a fake binding that records its calls, GPUStack's
way), then a fake `nvidia-smi` on PATH, then PCI only with a reason.

PCI ids are real: H100 SXM5 10de:2330, H100 PCIe 10de:2331, H200 10de:2335, NVSwitch 10de:22a3
(accelerators.md 2.1). NVML values follow the units of nvidia-ml-py 13 (bytes, milliwatts).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_sysfs import FakeSysfs

from appliance.drivers.nvidia import NvidiaDriver, kernel_module_version
from appliance.drivers.nvidia_smi import parse_csv
from appliance.drivers.pci import VENDOR_NVIDIA
from appliance.records import DeviceKind
from helpers.fake_tools import FIXTURES, HANG, FakeTools, print_fixture

THREE_D = 0x030200
VGA = 0x030000
HDMI_AUDIO = 0x040300
BRIDGE_OTHER = 0x068000
ASPEED = 0x1A03
GIB = 1024**3


class NotSupported(Exception):
    """Stands in for pynvml.NVMLError_NotSupported."""


class FakeNvml:
    """Answers like pynvml for the GPUs given as (bus id, name, uuid); records every call."""

    def __init__(self, *gpus: tuple[str, str, str], fail: set[str] | None = None) -> None:
        self.gpus = gpus
        self.fail = fail or set()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append(name)
            if name in self.fail:
                raise NotSupported(name)
            return getattr(self, "_" + name)(*args)

        return call

    def _nvmlSystemGetDriverVersion(self) -> str:
        return "550.90.07"

    def _nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def _nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def _nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def _nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        return [gpu[2] for gpu in self.gpus].index(uuid)

    def _nvmlDeviceGetPciInfo(self, handle: int) -> Any:
        return SimpleNamespace(busId=self.gpus[handle][0])

    def _nvmlDeviceGetName(self, handle: int) -> str:
        return self.gpus[handle][1]

    def _nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.gpus[handle][2]

    def _nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=80 * GIB, used=412 * 1024**2, free=80 * GIB - 412 * 1024**2)

    def _nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        return (9, 0)

    def _nvmlDeviceGetMinorNumber(self, handle: int) -> int:
        return handle

    def _nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 700000

    def _nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=37, memory=5)

    def _nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 34

    def _nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return 68210

    def _nvmlDeviceGetTotalEccErrors(self, handle: int, kind: int, counter: int) -> int:
        return 0


H100 = ("00000000:06:00.0", "NVIDIA H100 80GB HBM3", "GPU-3a1f9e02-4c11-4b8a-9e2d-7f6b1c0a55e1")


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys")


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    fake = FakeTools(tmp_path / "bin")
    monkeypatch.setenv("PATH", fake.path())
    return fake


def test_nvml_describes_the_gpu_with_versions_and_compute_capability(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver="nvidia", numa_node=0)

    [gpu] = NvidiaDriver(sysfs.root, nvml_module=FakeNvml(H100), env={}).discover()

    assert (gpu.id, gpu.kind, gpu.name, gpu.usable) == (
        "nvidia0", DeviceKind.NVIDIA, "NVIDIA H100 80GB HBM3", True,
    )  # fmt: skip
    assert gpu.memory_total_mib == 80 * 1024
    assert gpu.reason == "usable: 80 GiB, driver 550.90.07, CUDA 12.4, compute 9.0"
    assert gpu.details["uuid"] == H100[2]
    assert gpu.details["power_limit_w"] == 700.0


def test_nvml_telemetry_converts_units_and_survives_an_unsupported_metric(
    sysfs: FakeSysfs,
) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver="nvidia")
    nvml = FakeNvml(H100, fail={"nvmlDeviceGetTemperature"})
    driver = NvidiaDriver(sysfs.root, nvml_module=nvml, env={})
    [gpu] = driver.discover()

    sample = driver.telemetry(gpu)

    assert sample.available is True
    assert (sample.utilization_pct, sample.memory_used_mib) == (37.0, 412)
    assert (sample.power_w, sample.power_limit_w) == (68.21, 700.0)  # from milliwatts
    assert sample.temperature_c is None  # NotSupported: that metric only


def test_no_nvidia_pci_function_means_nvml_is_never_touched(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:cb:00.0", ASPEED, 0x2000, VGA, driver="ast")  # the BMC's VGA
    nvml = FakeNvml(H100)

    assert NvidiaDriver(sysfs.root, nvml_module=nvml).discover() == []
    assert nvml.calls == []


def test_cuda_visible_devices_hides_an_unlisted_gpu(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver="nvidia")

    env = {"CUDA_VISIBLE_DEVICES": "1"}
    [gpu] = NvidiaDriver(sysfs.root, nvml_module=FakeNvml(H100), env=env).discover()

    assert gpu.usable is False
    assert gpu.reason.startswith("hidden by CUDA_VISIBLE_DEVICES='1' (index 0 / GPU-3a1f9e02")
    visible = {"CUDA_VISIBLE_DEVICES": "GPU-3a1f9e02"}  # a UUID prefix is enough for CUDA
    assert NvidiaDriver(sysfs.root, nvml_module=FakeNvml(H100), env=visible).discover()[0].usable


def test_without_nvml_nvidia_smi_describes_the_gpu(
    sysfs: FakeSysfs, tools: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver="nvidia")
    tools.add("nvidia-smi", {"--query-gpu*": print_fixture("nvidia-smi/query-h100.csv")})
    monkeypatch.setattr("appliance.drivers.nvml.load_nvml", lambda: (None, "NVML missing"))
    driver = NvidiaDriver(sysfs.root, env={})

    [gpu] = driver.discover()
    sample = driver.telemetry(gpu)

    assert (gpu.name, gpu.usable, gpu.memory_total_mib) == ("NVIDIA H100 80GB HBM3", True, 81559)
    assert "read with nvidia-smi, because NVML missing" in gpu.reason
    assert (sample.memory_used_mib, sample.power_w, sample.temperature_c) == (412, 68.21, 34.0)


@pytest.mark.parametrize(
    ("driver_name", "expected"),
    [
        (None, "no kernel driver is bound to the GPU on PCI 0000:06:00.0: install the NVIDIA"),
        ("nouveau", "the GPU on PCI 0000:06:00.0 is driven by nouveau, which cannot run CUDA"),
        ("vfio-pci", "the GPU on PCI 0000:06:00.0 is bound to vfio-pci (passed to a VM)"),
        ("nvidia", "kernel driver nvidia is bound to the GPU on PCI 0000:06:00.0, but neither"),
    ],
)
def test_without_nvml_or_nvidia_smi_the_pci_record_says_what_to_fix(
    sysfs: FakeSysfs,
    tools: FakeTools,
    monkeypatch: pytest.MonkeyPatch,
    driver_name: str | None,
    expected: str,
) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver=driver_name)
    monkeypatch.setattr("appliance.drivers.nvml.load_nvml", lambda: (None, "NVML missing"))

    [gpu] = NvidiaDriver(sysfs.root, proc_root=sysfs.root).discover()

    assert (gpu.name, gpu.usable) == ("NVIDIA H100 SXM5 80GB", False)
    assert gpu.reason.startswith(expected)
    assert NvidiaDriver(sysfs.root).telemetry(gpu).available is False


def test_a_hung_nvidia_smi_is_killed_and_reported(
    sysfs: FakeSysfs, tools: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysfs.add_pci("0000:06:00.0", VENDOR_NVIDIA, 0x2330, THREE_D, driver="nvidia")
    tools.add("nvidia-smi", {"--query-gpu*": HANG})
    monkeypatch.setattr("appliance.drivers.nvml.load_nvml", lambda: (None, "NVML missing"))

    [gpu] = NvidiaDriver(sysfs.root, tool_timeout_s=0.5).discover()

    assert "nvidia-smi hung and was killed after 0.5 s" in gpu.reason


def test_kernel_module_version_reads_both_driver_flavours(tmp_path: Path) -> None:
    versions = []
    for name in ("proc-driver-version-580.txt", "proc-driver-version-open-565.txt"):
        (tmp_path / "driver" / "nvidia").mkdir(parents=True, exist_ok=True)
        text = (FIXTURES / "nvidia-smi" / name).read_text()
        (tmp_path / "driver" / "nvidia" / "version").write_text(text)
        versions.append(kernel_module_version(tmp_path))

    assert versions == ["580.173.02", "565.57.01"]
    assert kernel_module_version(tmp_path / "absent") is None


def test_nvidia_smi_csv_keeps_commas_in_names_and_reads_na_as_unknown() -> None:
    line = (
        "0, 00000000:82:00.0, GPU-1, 81559, [N/A], 0, N/A, [Not Supported], 700.00, 550.1, "
        "Odd, Name H100"
    )

    [gpu] = parse_csv(line + "\ngarbage line\n")

    assert (gpu.name, gpu.bus_id) == ("Odd, Name H100", "0000:82:00.0")
    assert (gpu.memory_used_mib, gpu.temperature_c, gpu.power_w) == (None, None, None)


def test_nvidia_audio_and_nvswitch_functions_are_not_gpus(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:82:00.0", VENDOR_NVIDIA, 0x2331, THREE_D)
    sysfs.add_pci("0000:82:00.1", VENDOR_NVIDIA, 0x22BA, HDMI_AUDIO)
    sysfs.add_pci("0000:83:00.0", VENDOR_NVIDIA, 0x22A3, BRIDGE_OTHER)
    gpu = ("00000000:82:00.0", "NVIDIA H100 PCIe", "GPU-2")

    found = NvidiaDriver(sysfs.root, nvml_module=FakeNvml(gpu), env={}).discover()

    assert [gpu.pci_address for gpu in found] == ["0000:82:00.0"]


def test_gpus_are_numbered_in_pci_order_and_matched_to_nvml_by_bus_id(sysfs: FakeSysfs) -> None:
    sysfs.add_pci("0000:9a:00.0", VENDOR_NVIDIA, 0x2335, THREE_D, driver="nvidia")
    sysfs.add_pci("0000:1b:00.0", VENDOR_NVIDIA, 0x2335, THREE_D, driver="nvidia")
    nvml = FakeNvml(
        ("00000000:9A:00.0", "NVIDIA H200", "GPU-b"), ("00000000:1B:00.0", "NVIDIA H200", "GPU-a")
    )

    found = NvidiaDriver(sysfs.root, nvml_module=nvml, env={}).discover()

    assert [(gpu.id, gpu.pci_address, gpu.details["uuid"]) for gpu in found] == [
        ("nvidia0", "0000:1b:00.0", "GPU-a"),
        ("nvidia1", "0000:9a:00.0", "GPU-b"),
    ]
