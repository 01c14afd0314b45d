"""Admin: `GET /admin/devices`, the device manager's cached inventory."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.deps import ServicesDep
from appliance.records import Accelerator

router = APIRouter()


@router.get("/devices", operation_id="admin_devices")
async def devices(services: ServicesDep) -> list[Accelerator]:
    return services.devices.devices()
