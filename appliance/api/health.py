"""`/health` (the process answers) and `/ready` (a model is loaded, or an upstream answers).

Neither needs an API key: load balancers and systemd probes call them, and they reveal only
whether the box is up and the models' names, never an error's text (it may name paths).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from appliance.api.deps import ServicesDep
from appliance.records import ModelState

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", operation_id="ready")
async def ready(services: ServicesDep) -> JSONResponse:
    loaded = services.engine.loaded()
    # A front door to upstream servers is ready as soon as one of them answers.
    upstreams = services.upstreams.states() if services.upstreams else []
    forwarded = sorted({u.name for u in upstreams if u.health == "up"})
    if forwarded or any(model.state == ModelState.READY for model in loaded):
        names = [m.name for m in loaded if m.state == ModelState.READY] + forwarded
        return JSONResponse({"status": "ready", "models": names})
    if not services.default_model:
        reason = "no model is installed; import one with `appliance models import FILE`"
    else:
        state = services.engine.state_of(services.default_model)
        installed = {model.name for model in services.store.list()}
        if services.default_model not in installed:
            reason = (
                f"the default model {services.default_model!r} is not installed; import it "
                "or change default_model"
            )
        elif state is None or state.state == ModelState.LOADING:
            reason = f"model {services.default_model!r} is loading"
        else:
            # The recorded error may name files and folders: the box's admin sees it with
            # `appliance status`; an anonymous probe learns only the state.
            reason = (
                f"model {services.default_model!r} is {state.state}; `appliance status` on "
                "the box says why"
            )
    return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
