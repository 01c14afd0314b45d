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

from appliance.config import Config
from appliance.daemon import device_event_handler
from appliance.engine.manager import EngineManager
from appliance.firmware_hooks.runner import HookRunner
from appliance.records import (
    Accelerator,
    DeviceEvent,
    DeviceKind,
    ModelInfo,
    ModelPlacement,
    ModelState,
)
from helpers.engine import model_info
from helpers.runtime import cpu_placer
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


async def test_losing_a_device_fails_its_models_and_runs_the_removed_hooks(
    tmp_path: Path, embedded_model: Path
) -> None:
    # Real parts: the engine manager with a llama.cpp worker, the hook runner with hook scripts.
    # The one fake is the hardware: the worker runs on the CPU but is recorded on `nvidia0`.
    hooks_dir = tmp_path / "hooks.d"
    for event in ("device-removed", "device-added"):
        (hooks_dir / f"{event}.d").mkdir(parents=True)
        hook = hooks_dir / f"{event}.d" / "10-record"
        hook.write_text(f"#!/bin/sh\ncat > {tmp_path}/{event}.json\n")
        hook.chmod(0o755)
    config = Config(engine={"context_length": 512, "threads": 1, "slots": 1})
    on_cpu = cpu_placer(config)

    async def on_the_gpu(info: ModelInfo) -> ModelPlacement:
        return (await on_cpu(info)).model_copy(update={"device_id": "nvidia0"})

    engine = EngineManager(config, placer=on_the_gpu)
    services = SimpleNamespace(engine=engine, hooks=HookRunner(hooks_dir=hooks_dir, timeout_s=10))
    handler = device_event_handler(services, asyncio.get_running_loop())  # type: ignore[arg-type]
    gpu = Accelerator(id="nvidia0", kind=DeviceKind.NVIDIA, vendor="NVIDIA", name="H100")
    try:
        worker = await engine.ensure_ready(model_info(embedded_model))
        handler(DeviceEvent(action="removed", subsystem="pci", device_id="nvidia0", device=gpu))
        handler(DeviceEvent(action="added", subsystem="block", devnode="/dev/sdb1"))
        for _ in range(200):
            if len(services.hooks.recent) == 2:
                break
            await asyncio.sleep(0.05)

        state = engine.state_of("smollm2")
        assert state is not None and state.state == ModelState.FAILED
        assert state.error == "device nvidia0 was lost: nvidia0 disappeared from the pci bus"
        assert worker.process is not None
        await asyncio.wait_for(worker.process.wait(), 10)  # its worker was killed
        removed = json.loads((tmp_path / "device-removed.json").read_text())
        assert (removed["device_id"], removed["failed_models"]) == ("nvidia0", ["smollm2"])
        added = json.loads((tmp_path / "device-added.json").read_text())
        assert added["devnode"] == "/dev/sdb1"
    finally:
        await engine.shutdown()
