"""Admin: `GET /admin/config`, the settings the daemon runs with and the file they came from."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.admin.protocol import DaemonSettings
from appliance.api.deps import ServicesDep
from appliance.config import default_config_path

router = APIRouter()


@router.get("/config", operation_id="admin_config")
async def config(services: ServicesDep) -> DaemonSettings:
    path = default_config_path()
    return DaemonSettings(
        settings=services.config.model_dump(mode="json"),
        config_file=str(path),
        config_file_exists=path.is_file(),
    )
