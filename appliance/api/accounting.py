"""Per-request accounting on the LAN listener: metrics and the audit log, for every route.

`AccountingMiddleware` (plain ASGI, so it sees the end of a stream, not just its headers)
gives each request a `RequestUsage`, reachable anywhere in the request as `current()`; the
key check, the engine path and the routes fill in who called, which model and how many
tokens. When the response is finished, the middleware counts it in the metrics and writes
one audit row. May import api.metrics, store, config, services.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from appliance.records import KeyLimits
from appliance.services import Services
from appliance.store.audit import AuditEntry

log = logging.getLogger("appliance.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip

# Probes and scrapes are not requests anyone needs audited.
_NOT_AUDITED = frozenset({"/", "/health", "/ready", "/metrics", "/api/version"})


@dataclass
class RequestUsage:
    """What one request did, filled in as it is served."""

    route: str
    arrived: float
    """Epoch seconds."""
    started: float
    """`time.perf_counter()` at arrival, for durations."""
    key_id: int | None = None
    key_name: str | None = None
    limits: KeyLimits | None = None
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    status: int = 0
    prompt: str | None = None

    @property
    def key_label(self) -> str:
        return self.key_name or "-"


_current: ContextVar[RequestUsage | None] = ContextVar("request_usage", default=None)


def current() -> RequestUsage | None:
    """The usage record of the request being served, if this code runs inside one."""
    return _current.get()


class AccountingMiddleware:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        usage = RequestUsage(route=scope["path"], arrived=time.time(), started=time.perf_counter())
        token = _current.set(usage)

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                usage.status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            usage.status = usage.status or 500
            raise
        finally:
            _current.reset(token)
            route = scope.get("route")
            # The route's template (`/v1/models/{model_id:path}`), so labels stay few.
            usage.route = getattr(route, "path", None) or "unmatched"
            self._finish(usage)

    def _finish(self, usage: RequestUsage) -> None:
        duration = time.perf_counter() - usage.started
        metrics = self.services.metrics
        if metrics is not None:
            metrics.observe_request(usage, duration)
        audit = self.services.audit
        if audit is None or usage.route in _NOT_AUDITED or usage.status == 0:
            return
        if usage.key_id is None and usage.status in (401, 413):
            return  # refused at the gate: a keyless flood must not cost a disk write each
        entry = AuditEntry(
            ts=usage.arrived, key_id=usage.key_id, key_name=usage.key_name, route=usage.route,
            model=usage.model, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
            status=usage.status, duration_s=round(duration, 6), prompt=usage.prompt,
        )  # fmt: skip
        # Off the event loop: a slow disk must not stall everyone's tokens.
        task = asyncio.get_running_loop().run_in_executor(None, _record, audit, entry)
        _pending.add(task)
        task.add_done_callback(_pending.discard)


_pending: set[asyncio.Future[None]] = set()


def _record(audit: Any, entry: AuditEntry) -> None:
    try:
        audit.record(entry)
    except Exception as error:  # bookkeeping must never fail a request
        log.warning("could not write the audit log: %s", error)
