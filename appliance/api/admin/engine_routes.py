"""Admin: engine statistics per loaded model (slots, queue, prefix-cache hits, token counts)."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter

from appliance.api.deps import ServicesDep

router = APIRouter()


@router.get("/models/{name}/stats", operation_id="admin_model_stats")
async def model_stats(name: str, services: ServicesDep) -> dict[str, object]:
    """Live counters from the model's worker: it answers between two decode steps."""
    services.store.get(name)  # 404 for a model that is not installed
    stats = await services.engine.stats(name)
    return {"model": name, **msgspec.structs.asdict(stats)}
