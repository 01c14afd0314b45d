"""Admin: `GET /admin/audit`, the audit log of LAN API requests (newest first)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from appliance.api.admin.protocol import AuditQuery, AuditRecord
from appliance.api.deps import ServicesDep
from appliance.errors import UsageError

router = APIRouter()


@router.get("/audit", operation_id="admin_audit")
async def audit(services: ServicesDep, query: Annotated[AuditQuery, Query()]) -> list[AuditRecord]:
    if services.audit is None:
        raise UsageError("this daemon keeps no audit log")
    if not 1 <= query.limit <= 10_000:
        raise UsageError("limit must be between 1 and 10000")
    entries = services.audit.query(
        since=query.since, key=query.key, model=query.model, limit=query.limit
    )
    return [AuditRecord.model_validate(entry.model_dump()) for entry in entries]
