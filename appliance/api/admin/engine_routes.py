"""Admin: engine statistics per loaded model (slots, queue, prefix-cache hits, token counts,
speculative decoding by source and the draft model in use)."""

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
    loaded = services.engine.state_of(name)
    draft = loaded.draft_model if loaded else ""
    return {"model": name, "draft_model": draft, **msgspec.structs.asdict(stats)}
