"""Admin: models — list, show, import (NDJSON progress), remove, load, unload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from appliance.api.admin.protocol import ImportProgress, ImportRequest, ModelRemoved
from appliance.api.deps import ServicesDep
from appliance.errors import ApplianceError
from appliance.records import LoadedModel, ModelInfo

router = APIRouter()

# Progress lines are rate-limited: a 10 GB copy must not produce a million lines.
_PROGRESS_INTERVAL_S = 0.25


@router.get("/models", operation_id="admin_list_models")
async def list_models(services: ServicesDep) -> list[ModelInfo]:
    return services.store.list()


@router.get("/models/{name}", operation_id="admin_show_model")
async def show_model(name: str, services: ServicesDep) -> ModelInfo:
    return services.store.get(name)


@router.post("/models/import", operation_id="admin_import_model")
async def import_model(body: ImportRequest, services: ServicesDep) -> StreamingResponse:
    """Import a file the daemon can read; answers NDJSON progress lines, then done/error."""
    return StreamingResponse(_import_lines(body, services), media_type="application/x-ndjson")


async def _import_lines(body: ImportRequest, services: ServicesDep) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[ImportProgress] = asyncio.Queue()
    last_sent = 0.0

    def progress(completed: int, total: int) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if now - last_sent >= _PROGRESS_INTERVAL_S or completed == total:
            last_sent = now
            line = ImportProgress(status="copying", completed_bytes=completed, total_bytes=total)
            loop.call_soon_threadsafe(updates.put_nowait, line)

    def run() -> ImportProgress:
        try:
            result = services.store.import_file(
                Path(body.path), body.name, source=body.path, progress=progress
            )
        except ApplianceError as error:
            return ImportProgress(status="error", error=error.message, error_code=error.code)
        size = result.model.size_bytes
        return ImportProgress(
            status="done",
            model=result.model,
            created=result.created,
            completed_bytes=size,
            total_bytes=size,
        )

    task = asyncio.create_task(asyncio.to_thread(run))
    while not task.done() or not updates.empty():
        getter = asyncio.create_task(updates.get())
        done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            yield getter.result().model_dump_json() + "\n"
        else:
            getter.cancel()
    yield (await task).model_dump_json() + "\n"


@router.delete("/models/{name}", operation_id="admin_remove_model")
async def remove_model(name: str, services: ServicesDep) -> ModelRemoved:
    services.store.get(name)  # 404 before anything is unloaded
    unloaded = await services.engine.unload(name)
    services.store.remove(name)
    return ModelRemoved(name=name, unloaded=unloaded)


@router.post("/models/{name}/load", operation_id="admin_load_model")
async def load_model(name: str, services: ServicesDep) -> LoadedModel:
    return await services.engine.load(services.store.get(name), explicit=True)


@router.post("/models/{name}/unload", operation_id="admin_unload_model")
async def unload_model(name: str, services: ServicesDep) -> ModelRemoved:
    services.store.get(name)
    return ModelRemoved(name=name, unloaded=await services.engine.unload(name))
