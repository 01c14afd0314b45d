"""Admin: `GET /admin/status`, the daemon's summary for the TUI and `appliance status`."""

from __future__ import annotations

import time

from fastapi import APIRouter

from appliance import __version__
from appliance.api.admin.protocol import DaemonStatus
from appliance.api.deps import ServicesDep

router = APIRouter()


@router.get("/status", operation_id="admin_status")
async def status(services: ServicesDep) -> DaemonStatus:
    config = services.config
    certificate = services.tls.certificate if services.tls else None
    return DaemonStatus(
        version=__version__,
        started_at=services.started_at,
        uptime_s=round(time.time() - services.started_at, 3),
        api_url=services.api_url,
        listen=config.api.listen,
        api_key_required=config.api.require_api_key,
        state_dir=str(config.state_dir),
        admin_socket=str(config.admin_socket),
        default_model=services.default_model,
        devices=services.devices.devices(),
        models_loaded=services.engine.loaded(),
        models_installed=len(services.store.list()),
        runtime=services.devices.runtimes_if_probed(),
        tls_mode=config.tls.mode,
        tls_fingerprint=certificate.fingerprint if certificate else None,
        tls_not_after=certificate.not_after.timestamp() if certificate else None,
        upstreams=services.upstreams.states() if services.upstreams else [],
    )
