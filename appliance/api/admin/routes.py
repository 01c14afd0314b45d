"""The admin router: one module per resource, mounted under `/admin`.

Served on the Unix socket without keys (its file mode is the authorisation) and on the LAN
listener behind an admin-scoped key (see `api/app.py`).
"""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.admin import (
    audit_routes,
    config_routes,
    devices_routes,
    doctor_routes,
    engine_routes,
    host_routes,
    keys_routes,
    logs_routes,
    models_routes,
    setup_routes,
    status_routes,
    upstream_routes,
)

router = APIRouter(prefix="/admin", tags=["admin"])
for module in (
    status_routes, host_routes, devices_routes, models_routes, engine_routes, keys_routes,
    logs_routes, config_routes, audit_routes, doctor_routes, setup_routes, upstream_routes,
):  # fmt: skip
    router.include_router(module.router)
