"""Admin: the device manager's cache: inventory, telemetry with history, runtimes, placements.

Every route reads the cache (STYLE.md habit 7); none calls a driver. The runtime probe is the
one exception to "instant": its first call runs the probe child if boot has not done it yet,
in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from appliance.api.deps import ServicesDep
from appliance.placement import rank_placements
from appliance.records import Accelerator, DeviceTelemetry, Placement, RuntimeReport

router = APIRouter()


@router.get("/devices", operation_id="admin_devices")
async def devices(services: ServicesDep) -> list[Accelerator]:
    return services.devices.devices()


@router.get("/devices/telemetry", operation_id="admin_devices_telemetry")
async def telemetry(services: ServicesDep, history: bool = False) -> DeviceTelemetry:
    """The last sample per device; with `history=true` also the kept history (sparklines)."""
    return DeviceTelemetry(
        latest=services.devices.telemetry(),
        history=services.devices.history() if history else {},
        interval_s=services.config.devices.telemetry_interval_s,
    )


@router.get("/devices/runtimes", operation_id="admin_devices_runtimes")
async def runtimes(services: ServicesDep) -> RuntimeReport:
    return await asyncio.to_thread(services.devices.runtimes)


@router.get("/devices/placements", operation_id="admin_devices_placements")
async def placements(services: ServicesDep) -> list[Placement]:
    """Where a model could run, best first, each with its reason."""
    runtimes = await asyncio.to_thread(services.devices.runtimes)
    return rank_placements(services.devices.devices(), runtimes)
