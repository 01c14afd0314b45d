"""Admin: models — list, show, import (NDJSON progress), verify, export, fit, catalog, media,
remove, load, unload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from appliance.api.admin.protocol import (
    ChatTemplateRequest,
    Exported,
    ExportRequest,
    ImportProgress,
    ImportRequest,
    ModelRemoved,
    PinRequest,
    VerifyRequest,
)
from appliance.api.deps import AdminSocketDep, ServicesDep, require_admin_socket
from appliance.errors import ApplianceError, UsageError
from appliance.placement.fit import PlanOptions, catalog_verdicts, plan_catalog, plan_model
from appliance.records import (
    CatalogVerdict,
    FitPlan,
    ImportableFile,
    LoadedModel,
    ModelInfo,
    RemovableMount,
    VerifyResult,
)
from appliance.store.bundle import export_bundle
from appliance.store.catalog import load_catalog
from appliance.store.importing import import_source
from appliance.store.media import importable_files, scan_mounts
from appliance.store.staging import ImportResult

router = APIRouter()

# Progress lines are rate-limited: a 10 GB copy must not produce a million lines.
_PROGRESS_INTERVAL_S = 0.25


@router.get("/models", operation_id="admin_list_models")
async def list_models(services: ServicesDep) -> list[ModelInfo]:
    return services.store.list()


@router.get("/catalog", operation_id="admin_catalog")
async def catalog(
    services: ServicesDep, context: int = 4096, parallel: int = 1
) -> list[CatalogVerdict]:
    opts = PlanOptions(context_length=context, parallel=parallel)
    return catalog_verdicts(services.devices.devices(), opts)


@router.get("/media", operation_id="admin_media", dependencies=[AdminSocketDep])
async def media() -> list[RemovableMount]:
    """Mounted removable filesystems (USB sticks) and the model files on them."""
    return await asyncio.to_thread(scan_mounts)


@router.get("/media/files", operation_id="admin_media_files", dependencies=[AdminSocketDep])
async def media_files(path: str) -> list[ImportableFile]:
    return await asyncio.to_thread(importable_files, Path(path))


@router.post("/models/verify", operation_id="admin_verify_models")
async def verify(body: VerifyRequest, services: ServicesDep) -> list[VerifyResult]:
    return await asyncio.to_thread(services.store.verify, body.name)


@router.get("/models/{name}", operation_id="admin_show_model")
async def show_model(name: str, services: ServicesDep) -> ModelInfo:
    return services.store.get(name)


@router.get("/models/{name}/fit", operation_id="admin_fit_model")
async def fit_model(
    name: str, services: ServicesDep, context: int = 4096, parallel: int = 1
) -> FitPlan:
    """How an installed model, or a catalog build named `ID:QUANT`, fits each device."""
    opts = PlanOptions(context_length=context, parallel=parallel)
    entry_id, _, quant = name.partition(":")
    entries = {entry.id: entry for entry in load_catalog().models}
    if quant and entry_id in entries:
        entry = entries[entry_id]
        return plan_catalog(entry, entry.file_for(quant), services.devices.devices(), opts)
    info = services.store.get(name)
    if info.shape is None:
        raise UsageError(f"{name} has no recorded layer shape (an ONNX model or an old import)")
    return plan_model(info, services.devices.devices(), opts)


@router.post(
    "/models/{name}/export", operation_id="admin_export_model", dependencies=[AdminSocketDep]
)
async def export_model(name: str, body: ExportRequest, services: ServicesDep) -> Exported:
    dest = await asyncio.to_thread(export_bundle, services.store, name, Path(body.path))
    return Exported(name=name, path=str(dest), size_bytes=dest.stat().st_size)


@router.post("/models/import", operation_id="admin_import_model")
async def import_model(
    body: ImportRequest, services: ServicesDep, request: Request
) -> StreamingResponse:
    """Import a path or URL the daemon can reach; answers NDJSON progress lines, then done/error."""
    if (body.path is None) == (body.url is None):
        raise UsageError("give exactly one of path or url")
    if body.path is not None:
        require_admin_socket(request)
    return StreamingResponse(_import_lines(body, services), media_type="application/x-ndjson")


def _run_import(
    body: ImportRequest, services: ServicesDep, progress: Callable[[int, int], None]
) -> ImportResult:
    source = body.url if body.url is not None else body.path
    assert source is not None
    return import_source(services.store, source, body.name, progress=progress, sha256=body.sha256)


async def _import_lines(body: ImportRequest, services: ServicesDep) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[ImportProgress] = asyncio.Queue()
    last_sent = 0.0
    status = "downloading" if body.url else "copying"

    def progress(completed: int, total: int) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if now - last_sent >= _PROGRESS_INTERVAL_S or completed == total:
            last_sent = now
            line = ImportProgress(status=status, completed_bytes=completed, total_bytes=total)
            loop.call_soon_threadsafe(updates.put_nowait, line)

    def run() -> ImportProgress:
        try:
            result = _run_import(body, services, progress)
        except ApplianceError as error:
            return ImportProgress(status="error", error=error.message, error_code=error.code)
        size = result.model.size_bytes
        return ImportProgress(status="done", model=result.model, created=result.created,
                              completed_bytes=size, total_bytes=size)  # fmt: skip

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


@router.put("/models/{name}/template", operation_id="admin_set_chat_template")
async def set_chat_template(
    name: str, body: ChatTemplateRequest, services: ServicesDep
) -> ModelInfo:
    """Replace the model's chat template (checked now), or restore the file's own with null."""
    return services.store.set_chat_template(name, body.template)


@router.post("/models/{name}/load", operation_id="admin_load_model")
async def load_model(name: str, services: ServicesDep) -> LoadedModel:
    return await services.engine.load(services.store.get(name), explicit=True)


@router.put("/models/{name}/pin", operation_id="admin_pin_model")
async def pin_model(name: str, body: PinRequest, services: ServicesDep) -> LoadedModel:
    services.store.get(name)  # 404 with the installed names for a typo
    return services.engine.set_pinned(name, body.pinned)


@router.post("/models/{name}/unload", operation_id="admin_unload_model")
async def unload_model(name: str, services: ServicesDep) -> ModelRemoved:
    services.store.get(name)
    return ModelRemoved(name=name, unloaded=await services.engine.unload(name))
