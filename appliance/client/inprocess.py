"""InProcessTransport: a blocking httpx transport that answers with an ASGI app in this process.

The CLI's `AdminClient` speaks to the daemon over the admin socket; when no daemon runs, it
speaks to the same admin app served here (see `appliance.offline`), through this transport, so
every admin action has one code path. May import httpx and the standard library only (the app
is handed in; this module knows nothing of FastAPI or the appliance).

Why not an existing bridge: httpx's `ASGITransport` is async-only (a blocking `httpx.Client`
cannot use it) and collects a whole answer before returning it, and Starlette's `TestClient`
(a test tool) also buffers the body and re-raises the app's errors. An import streams NDJSON
progress lines for minutes, so here the app runs on an event loop in a helper thread and each
body chunk crosses a queue as soon as the app sends it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import Future
from typing import Any

import httpx

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_END: Message = {"type": "appliance.app_finished"}


class InProcessTransport(httpx.BaseTransport):
    """Serve each request with `app` on a private event loop; stream the answer back."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="in-process-admin-app", daemon=True
        )
        self._thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        messages: queue.Queue[Message] = queue.Queue()
        disconnected = asyncio.Event()
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()  # the caller closed the answer before its end
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            messages.put(message)

        future = asyncio.run_coroutine_threadsafe(
            self._app(_scope(request), receive, send), self._loop
        )
        future.add_done_callback(lambda _: messages.put(_END))
        start = messages.get()
        if start is _END:  # the app failed before it answered: its error is the caller's
            future.result()
            raise httpx.RemoteProtocolError("the in-process app ended without an answer")
        return httpx.Response(
            start["status"],
            headers=list(start.get("headers", [])),
            stream=_Body(messages, future, self._loop, disconnected),
            request=request,
        )

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def end_what_runs() -> None:  # an answer left unread, a request interrupted
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(end_what_runs(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _scope(request: httpx.Request) -> Message:
    url = request.url
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": url.path,
        "raw_path": url.raw_path.split(b"?", 1)[0],
        "query_string": url.query,
        "root_path": "",
        "headers": [(key.lower(), value) for key, value in request.headers.raw],
        "server": (url.host, url.port or 80),
        "client": ("127.0.0.1", 0),
    }


class _Body(httpx.SyncByteStream):
    """The answer's body chunks, as the app sends them."""

    def __init__(
        self,
        messages: queue.Queue[Message],
        future: Future[None],
        loop: asyncio.AbstractEventLoop,
        disconnected: asyncio.Event,
    ) -> None:
        self._messages = messages
        self._future = future
        self._loop = loop
        self._disconnected = disconnected

    def __iter__(self) -> Iterator[bytes]:
        while True:
            message = self._messages.get()
            if message is _END:
                return
            if message["type"] != "http.response.body":
                continue
            if message.get("body"):
                yield bytes(message["body"])
            if not message.get("more_body", False):
                return

    def close(self) -> None:
        # Like a client that hangs up: a streaming route sees http.disconnect and stops.
        if not self._future.done():
            self._loop.call_soon_threadsafe(self._disconnected.set)
