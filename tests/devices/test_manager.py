"""appliance/devices: the inventory cache, change events, telemetry loop and runtime probe."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import pytest

from appliance.config import Config
from appliance.devices import DeviceManager, DriverFailed
from appliance.devices.runtimes import probe_runtimes
from appliance.drivers.base import Driver
from appliance.records import Accelerator, DeviceEvent, DeviceKind, RuntimeReport, Telemetry


class ScriptedDriver(Driver):
    """A driver whose devices and failures the test sets between calls."""

    def __init__(self, name: str = "nvidia") -> None:
        self.name = name
        self.found: list[Accelerator] = []
        self.discover_error: Exception | None = None
        self.telemetry_error: Exception | None = None

    def discover(self) -> list[Accelerator]:
        if self.discover_error:
            raise self.discover_error
        return list(self.found)

    def telemetry(self, device: Accelerator) -> Telemetry:
        if self.telemetry_error:
            raise self.telemetry_error
        return Telemetry(device_id=device.id, timestamp=time.time(), utilization_pct=42.0)


def gpu(index: int, address: str, usable: bool = True) -> Accelerator:
    return Accelerator(
        id=f"nvidia{index}", kind=DeviceKind.NVIDIA, vendor="NVIDIA", name="NVIDIA H100",
        pci_address=address, usable=usable, reason="usable" if usable else "hidden",
    )  # fmt: skip


def test_refresh_emits_added_removed_and_changed_events_to_subscribers() -> None:
    driver = ScriptedDriver()
    manager = DeviceManager([driver])
    events: list[DeviceEvent] = []
    manager.subscribe(events.append)
    driver.found = [gpu(0, "0000:06:00.0"), gpu(1, "0000:07:00.0")]

    manager.refresh()
    driver.found = [gpu(0, "0000:06:00.0", usable=False)]
    manager.refresh()

    assert [(e.action, e.device_id) for e in events] == [
        ("added", "nvidia0"), ("added", "nvidia1"),
        ("removed", "nvidia1"), ("changed", "nvidia0"),
    ]  # fmt: skip
    assert events[2].device is not None and events[2].device.pci_address == "0000:07:00.0"


def test_a_failing_subscriber_does_not_starve_the_others() -> None:
    driver = ScriptedDriver()
    driver.found = [gpu(0, "0000:06:00.0")]
    manager = DeviceManager([driver])
    seen: list[str] = []
    manager.subscribe(lambda event: 1 / 0)
    manager.subscribe(lambda event: seen.append(event.action))

    manager.refresh()

    assert seen == ["added"]


def test_failing_telemetry_keeps_the_inventory_and_marks_samples_unavailable() -> None:
    driver = ScriptedDriver()
    driver.found = [gpu(0, "0000:06:00.0")]
    manager = DeviceManager([driver])
    manager.refresh()
    driver.telemetry_error = RuntimeError("NVML: Unknown Error")

    latest = manager.sample_once()

    assert [d.id for d in manager.devices()] == ["nvidia0"]
    assert latest["nvidia0"].available is False
    assert latest["nvidia0"].error == "nvidia telemetry failed: NVML: Unknown Error"


def test_history_is_bounded_and_forgets_removed_devices() -> None:
    driver = ScriptedDriver()
    driver.found = [gpu(0, "0000:06:00.0")]
    manager = DeviceManager([driver], history_length=3)
    manager.refresh()

    for _ in range(5):
        manager.sample_once()
    kept = len(manager.history()["nvidia0"])
    driver.found = []
    manager.refresh()

    assert kept == 3
    assert manager.history() == {}


def test_an_explicitly_chosen_vendor_that_fails_or_finds_nothing_is_an_error() -> None:
    broken = ScriptedDriver("ascend")
    broken.discover_error = OSError("npu-smi crashed")
    with pytest.raises(DriverFailed, match="the ascend driver failed: npu-smi crashed"):
        DeviceManager([broken], strict="ascend").refresh()

    empty = ScriptedDriver("ascend")
    with pytest.raises(DriverFailed, match=r"devices\.driver is 'ascend', but that driver"):
        DeviceManager([empty], strict="ascend").refresh()
    assert DeviceManager([broken]).refresh() == []  # in `auto`, a broken vendor is only logged


def test_the_runtime_probe_runs_once_and_is_cached() -> None:
    calls: list[int] = []

    def probe() -> RuntimeReport:
        calls.append(1)
        return RuntimeReport(llama_cpp_version="0.3.36", llama_cpp_backends=["CPU"])

    manager = DeviceManager([], runtime_probe=probe)
    manager.runtimes()
    manager.runtimes()

    assert calls == [1]


def test_the_probe_reports_the_cpu_build_of_the_installed_llama_cpp() -> None:
    report = probe_runtimes(Config())

    assert report.llama_cpp_version
    assert "CPU" in report.llama_cpp_backends
    assert report.llama_cpp_gpu_offload is False  # this CI machine has no GPU
    assert "CPUExecutionProvider" in report.onnxruntime_providers


def test_a_probe_that_cannot_run_becomes_a_note() -> None:
    report = probe_runtimes(Config(), python=sys.executable + "-does-not-exist")
    assert report.llama_cpp_version is None
    assert report.notes and "runtime probe" in report.notes[0]


async def test_the_loop_samples_on_its_interval_until_cancelled() -> None:
    driver = ScriptedDriver()
    driver.found = [gpu(0, "0000:06:00.0")]
    manager = DeviceManager([driver])
    manager.refresh()

    task = asyncio.create_task(manager.run(0.05, hotplug=False))
    await asyncio.sleep(0.4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(manager.history()["nvidia0"]) >= 3
    assert manager.telemetry()["nvidia0"].utilization_pct == 42.0


def test_sequence_of_samples_is_kept_in_order() -> None:
    driver = ScriptedDriver()
    driver.found = [gpu(0, "0000:06:00.0")]
    manager = DeviceManager([driver])
    manager.refresh()
    manager.sample_once()
    manager.sample_once()

    stamps: Sequence[Telemetry] = manager.history("nvidia0")["nvidia0"]
    assert stamps[0].timestamp <= stamps[1].timestamp


def test_a_gpu_box_with_the_cpu_runtime_is_told_which_runtime_it_needs() -> None:
    driver = ScriptedDriver()
    driver.found = [gpu(0, "0000:06:00.0")]
    cpu_build = RuntimeReport(llama_cpp_runtime="cpu", llama_cpp_backends=["CPU"])
    manager = DeviceManager([driver], runtime_probe=lambda: cpu_build)
    manager.refresh()

    needed = manager.runtimes().needed_runtime

    assert needed is not None
    assert "1 usable NVIDIA GPU(s) but the cpu build of llama.cpp is installed" in needed
    assert "ai-appliance-runtime-cuda" in needed
    cuda_build = RuntimeReport(llama_cpp_runtime="cuda", llama_cpp_backends=["CPU", "CUDA"])
    with_cuda = DeviceManager([driver], runtime_probe=lambda: cuda_build)
    with_cuda.refresh()
    assert with_cuda.runtimes().needed_runtime is None


def test_a_cuda_build_on_a_box_without_a_usable_gpu_says_models_run_on_the_cpu() -> None:
    driver = ScriptedDriver()
    cuda_build = RuntimeReport(llama_cpp_runtime="cuda", llama_cpp_backends=["CPU", "CUDA"])
    manager = DeviceManager([driver], runtime_probe=lambda: cuda_build)
    manager.refresh()

    notes = manager.runtimes().notes

    assert any(
        "cuda build of llama.cpp is installed" in note and "models run on the CPU" in note
        for note in notes
    ), notes
    driver.found = [gpu(0, "0000:06:00.0")]
    manager.refresh()
    assert not any("models run on the CPU" in note for note in manager.runtimes().notes)
