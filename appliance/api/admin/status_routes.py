"""Admin: `GET /admin/status`, the daemon's summary for the TUI and `appliance status`."""

from __future__ import annotations

import time

from fastapi import APIRouter

from appliance import __version__
from appliance.api.admin.protocol import DaemonStatus
from appliance.api.admin.setup_routes import is_set_up
from appliance.api.deps import ServicesDep

router = APIRouter()


@router.get("/status", operation_id="admin_status")
async def status(services: ServicesDep) -> DaemonStatus:
    # First: without a daemon (the CLI's in-process admin app) this is where it refuses, before
    # any device is asked anything.
    loaded = services.engine.loaded()
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
        models_loaded=loaded,
        models_installed=len(services.store.list()),
        runtime=services.devices.runtimes_if_probed(),
        tls_mode=config.tls.mode,
        tls_fingerprint=certificate.fingerprint if certificate else None,
        tls_not_after=certificate.not_after.timestamp() if certificate else None,
        setup_complete=is_set_up(config.state_dir),
        discovery=services.advertiser.summary if services.advertiser else "off",
        upstreams=services.upstreams.states() if services.upstreams else [],
    )
