"""InProcessTransport: a blocking httpx client served by an ASGI app in this process, with the
answer streamed as the app sends it (an import's progress must show while it copies)."""

from __future__ import annotations

import asyncio
import threading

import httpx

from appliance.client.inprocess import InProcessTransport


def _streaming_app(release: threading.Event, ended: threading.Event):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        request = await receive()
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"echo " + request["body"] + b"\n",
                    "more_body": True})  # fmt: skip
        await asyncio.to_thread(release.wait, 30)
        await send({"type": "http.response.body", "body": b"second\n", "more_body": False})
        ended.set()

    return app


def test_the_first_line_arrives_before_the_app_has_finished() -> None:
    release, ended = threading.Event(), threading.Event()
    transport = InProcessTransport(_streaming_app(release, ended))
    client = httpx.Client(transport=transport, base_url="http://appliance")
    with client, client.stream("POST", "/x?y=1", content=b"hello") as response:
        lines = response.iter_lines()
        assert response.status_code == 201
        assert next(lines) == "echo hello"
        assert not ended.is_set()  # the app is still waiting: the line was streamed
        release.set()
        assert list(lines) == ["second"]
    assert ended.is_set()


def test_the_app_sees_the_path_query_and_headers() -> None:
    seen = {}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.update(path=scope["path"], query=scope["query_string"], headers=dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    with httpx.Client(transport=InProcessTransport(app), base_url="http://appliance") as client:
        assert client.get("/admin/models/a%3Ab", params={"n": 2},
                          headers={"X-Test": "yes"}).json() == {}  # fmt: skip
    assert seen["path"] == "/admin/models/a:b" and seen["query"] == b"n=2"
    assert seen["headers"][b"x-test"] == b"yes"


def test_closing_an_answer_early_tells_the_app_the_client_went_away() -> None:
    told = threading.Event()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one\n", "more_body": True})
        if (await receive())["type"] == "http.disconnect":
            told.set()

    client = httpx.Client(transport=InProcessTransport(app), base_url="http://appliance")
    with client, client.stream("GET", "/") as response:
        assert next(response.iter_lines()) == "one"
    assert told.wait(10)
