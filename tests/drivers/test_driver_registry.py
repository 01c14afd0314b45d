"""drivers/__init__.py: the registry, and failures contained per vendor."""

from __future__ import annotations

import logging

import pytest

from appliance.drivers import Driver, all_drivers, discover_all
from appliance.records import Accelerator, DeviceKind, Telemetry


class _Broken(Driver):
    name = "broken"

    def discover(self) -> list[Accelerator]:
        raise RuntimeError("vendor library exploded")

    def telemetry(self, device: Accelerator) -> Telemetry:
        raise AssertionError("never sampled")


class _OneDevice(Driver):
    name = "one"

    def discover(self) -> list[Accelerator]:
        return [Accelerator(id="cpu0", kind=DeviceKind.CPU, vendor="Test", name="Test CPU")]

    def telemetry(self, device: Accelerator) -> Telemetry:
        return Telemetry(device_id=device.id, timestamp=0.0)


def test_registry_has_one_driver_per_vendor() -> None:
    assert sorted(driver.name for driver in all_drivers()) == ["ascend", "cpu", "nvidia"]


def test_one_failing_driver_does_not_hide_another_vendors_devices(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="appliance.drivers"):
        found = discover_all([_Broken(), _OneDevice()])

    assert [device.id for device in found] == ["cpu0"]
    assert "broken driver failed, its devices are not listed: vendor library exploded" in (
        caplog.text
    )


def test_this_machine_always_has_a_usable_cpu() -> None:
    found = discover_all()

    [cpu] = [device for device in found if device.kind is DeviceKind.CPU]
    assert cpu.id == "cpu0"
    assert cpu.usable
    assert len({device.id for device in found}) == len(found)  # ids are unique
