"""SIGTERM drains the daemon: no new connections, answers in progress go on, then end cleanly.

Each test has a daemon of its own (it is stopped by the test), on the real SmolLM2 model.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon

# Tokens 0 and 2 (SmolLM2's end-of-text and end-of-turn) are banned: the answer runs to max_tokens.
LONG = {
    "model": "smollm2", "stream": True, "max_tokens": 3000, "logit_bias": {"0": -100, "2": -100},
    "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
}  # fmt: skip


def own_daemon(tmp_path: Path, embedded_model: Path, drain_s: str) -> Daemon:
    run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smollm2")
    return start_daemon(tmp_path, APPLIANCE_API__DRAIN_S=drain_s)


@pytest.fixture
def quick_drain(tmp_path: Path, embedded_model: Path) -> Iterator[Daemon]:
    daemon = own_daemon(tmp_path, embedded_model, drain_s="2")
    yield daemon
    stop_daemon(daemon)


@pytest.fixture
def long_drain(tmp_path: Path, embedded_model: Path) -> Iterator[Daemon]:
    daemon = own_daemon(tmp_path, embedded_model, drain_s="600")
    yield daemon
    stop_daemon(daemon)


def events(lines: Iterator[str]) -> Iterator[dict | str]:
    """The SSE stream's payloads: parsed JSON, or the final `[DONE]`."""
    for line in lines:
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            yield payload if payload == "[DONE]" else json.loads(payload)


def text_of(event: dict | str) -> str:
    if isinstance(event, dict) and event.get("choices"):
        return event["choices"][0]["delta"].get("content") or ""
    return ""


def refuses_connections(daemon: Daemon) -> bool:
    for _ in range(100):
        try:
            httpx.get(f"{daemon.root_url}/health", timeout=5)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            # Refused, or (a connection the kernel had queued as the listener closed) reset
            # unanswered: either way no new connection is served.
            return True
    return False


async def _read_until_text(lines: AsyncIterator[str]) -> list[dict | str]:
    """Events up to and including the first with answer text (or to the end)."""
    seen: list[dict | str] = []
    async for line in lines:
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            seen.append(payload if payload == "[DONE]" else json.loads(payload))
            if text_of(seen[-1]) or seen[-1] == "[DONE]":
                break
    return seen


async def _read_all(lines: AsyncIterator[str]) -> list[dict | str]:
    seen: list[dict | str] = []
    while batch := await _read_until_text(lines):
        seen += batch
    return seen


def finish_reasons(events: list[dict | str]) -> list[str]:
    return [e["choices"][0]["finish_reason"] for e in events if isinstance(e, dict)
            and e.get("choices") and e["choices"][0].get("finish_reason")]  # fmt: skip


def test_sigterm_takes_no_new_connections_and_lets_answers_in_progress_go_on(
    long_drain: Daemon,
) -> None:
    headers = {"Authorization": f"Bearer {long_drain.api_key}"}
    url = f"{long_drain.base_url}/chat/completions"

    async def scenario() -> tuple[list[dict | str], list[dict | str]]:
        async with (
            httpx.AsyncClient(timeout=600, headers=headers) as client,
            client.stream("POST", url, json=LONG) as long,
            client.stream("POST", url, json={**LONG, "max_tokens": 12}) as short,
        ):
            long_lines, short_lines = long.aiter_lines(), short.aiter_lines()
            await _read_until_text(long_lines)
            await _read_until_text(short_lines)
            long_drain.process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(refuses_connections, long_drain), (
                "the daemon still accepts connections"
            )
            short_rest = await _read_all(short_lines)
            # The long answer still runs after the short one ended: one more piece of it.
            long_rest = await _read_until_text(long_lines)
            assert text_of(long_rest[-1]), long_rest
            long_drain.process.send_signal(signal.SIGTERM)  # a second signal: end it now
            return short_rest, long_rest + await _read_all(long_lines)

    short_rest, long_rest = asyncio.run(scenario())
    assert finish_reasons(short_rest) == ["length"] and short_rest[-1] == "[DONE]"
    assert not any(isinstance(e, dict) and "error" in e for e in short_rest)
    assert long_rest[-1] == "[DONE]" and long_rest[-2]["error"]["code"] == "shutting_down"
    assert finish_reasons(long_rest) == [], "an answer cut short must not look finished"
    assert long_drain.process.wait(timeout=120) == 0


def test_answers_still_running_when_the_drain_time_ends_get_a_final_error_event(
    quick_drain: Daemon,
) -> None:
    headers = {"Authorization": f"Bearer {quick_drain.api_key}"}
    with httpx.stream("POST", f"{quick_drain.base_url}/chat/completions", json=LONG,
                      headers=headers, timeout=600) as answer:  # fmt: skip
        stream = events(answer.iter_lines())
        while not text_of(next(stream)):
            pass
        quick_drain.process.send_signal(signal.SIGTERM)
        rest = list(stream)
    assert rest[-1] == "[DONE]"
    error = rest[-2]["error"]
    assert error["code"] == "shutting_down" and "drain time (2 s) ran out" in error["message"]
    assert finish_reasons(rest) == []
    assert quick_drain.process.wait(timeout=120) == 0
    assert "ended 1 answer(s) in progress" in quick_drain.log()


def test_a_request_waiting_for_a_model_load_is_told_the_box_is_stopping(
    tmp_path: Path, embedded_model: Path
) -> None:
    # An empty runtime cache: the first load waits for the CPU-variant self-test (seconds),
    # which is what a request on a freshly installed box waits behind.
    run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smollm2")
    daemon = start_daemon(
        tmp_path, wait_ready=False, APPLIANCE_RUNTIME__CACHE_DIR=str(tmp_path / "fresh-cache")
    )
    try:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {daemon.api_key}"}) as c:
            status = json.loads(run_cli(tmp_path, "status", "--json").stdout)
            assert [m["state"] for m in status["models_loaded"]] == ["loading"]

            async def ask_then_stop() -> httpx.Response:
                request = asyncio.create_task(
                    asyncio.to_thread(c.post, f"{daemon.base_url}/chat/completions",
                                      json={**LONG, "stream": False, "max_tokens": 4})
                )  # fmt: skip
                await asyncio.sleep(1.0)  # the request is waiting for the load by now
                assert not request.done(), "the load finished before the test could stop it"
                daemon.process.send_signal(signal.SIGTERM)
                return await request

            answer = asyncio.run(ask_then_stop())
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "shutting_down"
        assert "the appliance is shutting down" in error["message"]
        assert daemon.process.wait(timeout=60) == 0
        assert "Traceback" not in daemon.log()
    finally:
        stop_daemon(daemon)
