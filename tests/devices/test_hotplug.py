"""Hot-plug through udev: an NPU appears and disappears in a umockdev testbed while the device
manager's loop runs (the real pyudev monitor, the real discovery), and the daemon's reaction."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from appliance.daemon import device_event_handler
from appliance.records import Accelerator, DeviceEvent, DeviceKind
from helpers.umockdev import have_umockdev

CHILD = Path(__file__).with_name("hotplug_child.py")


def test_npu_added_and_removed_under_umockdev_emits_events_and_updates_the_inventory(
    tmp_path: Path,
) -> None:
    assert have_umockdev(), "umockdev is a test dependency (Debian package umockdev; .ci/run)"
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}  # no npu-smi: PCI and nodes only

    result = subprocess.run(
        ["umockdev-wrapper", sys.executable, str(CHILD)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before"] == []
    assert report["after_add"] == [["ascend0", True]]
    assert report["after_remove"] == []
    assert report["events"] == [
        {"action": "added", "device": "ascend0"},
        {"action": "removed", "device": "ascend0"},
    ]


class FakeEngine:
    def __init__(self) -> None:
        self.failed: list[tuple[str, str]] = []

    def fail_models_on_device(self, device_id: str, reason: str) -> list[str]:
        self.failed.append((device_id, reason))
        return ["deepseek-r1-7b"]


class FakeHooks:
    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []

    async def run_async(self, event: str, payload: dict[str, Any]) -> list[object]:
        self.runs.append((event, payload))
        return []


async def test_losing_a_device_fails_its_models_and_runs_the_removed_hooks() -> None:
    services = SimpleNamespace(engine=FakeEngine(), hooks=FakeHooks())
    handler = device_event_handler(services, asyncio.get_running_loop())  # type: ignore[arg-type]
    gpu = Accelerator(id="nvidia0", kind=DeviceKind.NVIDIA, vendor="NVIDIA", name="H100")

    handler(DeviceEvent(action="removed", subsystem="pci", device_id="nvidia0", device=gpu))
    handler(DeviceEvent(action="added", subsystem="block", devnode="/dev/sdb1"))
    for _ in range(20):
        await asyncio.sleep(0.01)

    assert services.engine.failed == [("nvidia0", "nvidia0 disappeared from the pci bus")]
    [(removed, payload), (added, usb)] = services.hooks.runs
    assert (removed, payload["failed_models"]) == ("device-removed", ["deepseek-r1-7b"])
    assert (added, usb["devnode"]) == ("device-added", "/dev/sdb1")
