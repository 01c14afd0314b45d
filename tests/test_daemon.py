"""The daemon's uvicorn servers wake once a second when idle: the Date header still moves on
each second, and a stop request is acted on at once, not at the next tick."""

from __future__ import annotations

import asyncio
import time

import httpx
import uvicorn

from appliance.daemon import _Server
from helpers.daemon import free_port


async def hello(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


async def test_date_header_moves_each_second_and_stop_is_prompt() -> None:
    port = free_port()
    server = _Server(uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            first = (await client.get("/")).headers["date"]
            await asyncio.sleep(2.1)
            later = (await client.get("/")).headers["date"]
        assert first != later  # a stale Date would be a clock that stopped

        asked = time.perf_counter()
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=5)
        assert time.perf_counter() - asked < 0.5  # not held until the next whole second
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=5)
