"""The ASGI gate in front of both apps: the body-size limit and (LAN only) the API-key check.

Both run on the request's headers before FastAPI reads or parses a byte of the body, so a
client without a key, or with an oversized body, costs the daemon a header parse and (with a
key) one SQLite lookup. FastAPI's own dependencies run only after the whole body is read and
parsed as JSON, which is why these checks cannot live there.

A body that declares its size (`Content-Length`) is refused at once when too large; one sent
in chunks without a size is read up to the limit and refused as soon as it passes it.
May import errors and the API's dependencies; no engine, no store.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from appliance.errors import ApplianceError, AuthenticationError, RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Envelope = Callable[[ApplianceError], dict[str, object]]
Authenticate = Callable[[dict[str, str]], object]
"""Headers (lower-case names) → the caller; raises AuthenticationError when there is none."""

PUBLIC_PATHS = frozenset({"/health", "/ready"})
"""Paths that answer without a key: probes must not need one, and they reveal nothing."""


class RequestGate:
    """Refuse oversized bodies, then (when `authenticate` is given) requests without a key."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        envelope: Envelope,
        authenticate: Authenticate | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.envelope = envelope
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._refuse(send, self._too_large())
            return
        if self.authenticate is not None and scope.get("path", "") not in PUBLIC_PATHS:
            try:
                caller = self.authenticate(headers)
            except ApplianceError as error:
                await self._refuse(send, error)
                return
            scope.setdefault("state", {})["caller"] = caller
        if declared is None and headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_bounded(receive)
            if body is None:
                await self._refuse(send, self._too_large())
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"the request body is larger than the limit of {self.max_body_bytes:,} bytes "
            "(limits.max_body_bytes); send less, e.g. a shorter conversation or fewer inputs"
        )

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away; the app will see that too
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send, error: ApplianceError) -> None:
        body = json.dumps(self.envelope(error)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The body was not read: the connection cannot carry another request.
            (b"connection", b"close"),
        ]
        if isinstance(error, AuthenticationError):
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the real channel (a streaming answer waits on it for the
    client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
