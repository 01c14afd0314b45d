"""Run by test_hotplug.py under umockdev-wrapper: plug an NPU in and out while the manager runs.

Prints one JSON line: the device events the manager emitted, and the inventory seen after each
step. Not a test module itself (pytest does not collect it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from appliance.devices import DeviceManager
from appliance.drivers.ascend import AscendDriver
from helpers.umockdev import FIXTURES, Testbed

NPU = "/sys/devices/pci0000:00/0000:00:01.0/0000:c1:00.0"


async def wait_for(condition, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def main() -> None:
    bed = Testbed()
    description = (FIXTURES / "umockdev" / "ascend-910b-x1.umockdev").read_text()
    driver = AscendDriver(ascend_home=FIXTURES / "ascend-home", tool_timeout_s=2)
    manager = DeviceManager([driver])
    events: list[dict[str, object]] = []
    manager.subscribe(lambda e: events.append({"action": e.action, "device": e.device_id}))
    manager.refresh()
    seen = {"before": [d.id for d in manager.devices()]}
    task = asyncio.create_task(manager.run(0.1, hotplug=True))
    await asyncio.sleep(0.2)  # the monitor is listening now

    bed.add(description)
    bed.uevent(NPU, "add")
    await wait_for(lambda: manager.devices())
    seen["after_add"] = [(d.id, d.usable) for d in manager.devices()]

    bed.uevent(NPU, "remove")  # the kernel announces removal, then the sysfs entry goes
    bed.remove(NPU)
    await wait_for(lambda: not manager.devices())
    seen["after_remove"] = [d.id for d in manager.devices()]
    task.cancel()
    print(json.dumps({"events": events, **seen}))


asyncio.run(main())
