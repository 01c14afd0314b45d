"""Admin: API keys — list, create (shown once), change preferences and limits, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.admin.protocol import (
    ApiKeyPublic,
    KeyCreated,
    KeyCreateRequest,
    KeyUpdateRequest,
)
from appliance.api.deps import ServicesDep
from appliance.records import KeyLimits

router = APIRouter()


@router.get("/keys", operation_id="admin_list_keys")
async def list_keys(services: ServicesDep) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.model_validate(k.model_dump()) for k in services.keys.list()]


@router.post("/keys", operation_id="admin_create_key", status_code=201)
async def create_key(body: KeyCreateRequest, services: ServicesDep) -> KeyCreated:
    info, key = services.keys.create(
        body.name, scope=body.scope, reasoning_format=body.reasoning_format
    )
    return KeyCreated(key=key, info=ApiKeyPublic.model_validate(info.model_dump()))


@router.patch("/keys/{name_or_id}", operation_id="admin_update_key")
async def update_key(
    name_or_id: str, body: KeyUpdateRequest, services: ServicesDep
) -> ApiKeyPublic:
    info = None
    if "reasoning_format" in body.model_fields_set or not body.model_fields_set:
        info = services.keys.set_reasoning_format(name_or_id, body.reasoning_format)
    if "limits" in body.model_fields_set:
        info = services.keys.set_limits(name_or_id, body.limits or KeyLimits())
    assert info is not None
    return ApiKeyPublic.model_validate(info.model_dump())


@router.delete("/keys/{name_or_id}", operation_id="admin_revoke_key")
async def revoke_key(name_or_id: str, services: ServicesDep) -> ApiKeyPublic:
    info = services.keys.revoke(name_or_id)
    return ApiKeyPublic.model_validate(info.model_dump())
