"""Admin: upstream model names (`appliance upstream add|list|rm`), forwarded to other servers.

The daemon's upstream pool owns the list and its file; these routes only check that a name
does not shadow an installed model. API keys go in, never out (`has_api_key` only).
"""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.admin.protocol import UpstreamAdd
from appliance.api.deps import ServicesDep
from appliance.errors import Conflict, EngineError
from appliance.records import UpstreamState
from appliance.services import Services
from appliance.upstream import UpstreamPool, UpstreamSpec

router = APIRouter()


def _pool(services: Services) -> UpstreamPool:
    if services.upstreams is None:
        raise EngineError("this daemon was started without upstream support")
    return services.upstreams


@router.get("/upstreams", operation_id="admin_upstreams")
async def list_upstreams(services: ServicesDep) -> list[UpstreamState]:
    return _pool(services).states()


@router.post("/upstreams", operation_id="admin_add_upstream")
async def add_upstream(body: UpstreamAdd, services: ServicesDep) -> UpstreamState:
    pool = _pool(services)
    if any(info.name == body.name.strip() for info in services.store.list()):
        raise Conflict(
            f"{body.name!r} is an installed model on this box; give the upstream another name "
            "(clients choose between them by name)"
        )
    return await pool.add(UpstreamSpec(**body.model_dump()))


@router.delete("/upstreams/{name:path}", operation_id="admin_remove_upstream")
async def remove_upstream(
    name: str, services: ServicesDep, url: str | None = None
) -> list[UpstreamState]:
    return await _pool(services).remove(name, url)
