"""Admin: `GET /admin/logs` (the daemon's recent log records) and `GET /admin/hooks` (recent
lifecycle hook runs), both from memory: the console tails them without reading the journal."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from appliance.api.admin.protocol import HookRunInfo, LogLine
from appliance.api.deps import ServicesDep
from appliance.errors import UsageError

router = APIRouter()

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@router.get("/logs", operation_id="admin_logs")
async def logs(
    services: ServicesDep, after: int = 0, level: str = "INFO", limit: int = 500
) -> list[LogLine]:
    """Records after sequence number `after`, at `level` or above, oldest first."""
    name = level.upper()
    if name not in _LEVELS:
        raise UsageError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
    records = services.logs.since(after, logging.getLevelName(name), max(0, min(limit, 2000)))
    return [LogLine(seq=r.seq, timestamp=r.timestamp, level=r.level, logger=r.logger,
                    message=r.message) for r in records]  # fmt: skip


@router.get("/hooks", operation_id="admin_hook_runs")
async def hook_runs(services: ServicesDep) -> list[HookRunInfo]:
    """The hooks that ran since the daemon started (the last 100), newest first."""
    found = []
    for run in reversed(services.hooks.recent):
        result = run.result
        info = HookRunInfo(
            event=run.event, name=result.name, started_at=run.started_at,
            exit_code=result.exit_code, timed_out=result.timed_out,
            duration_s=round(result.duration_s, 3), ok=result.ok,
            stdout_tail=result.stdout_tail, stderr_tail=result.stderr_tail,
        )  # fmt: skip
        found.append(info)
    return found
