"""Engine behaviour seen from outside: live stats, prefix-cache hits, and the 429 limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from appliance.client import AdminClient
from appliance.errors import ModelNotFound
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon

SYSTEM = "You answer questions for the staff of ACME. " * 30


def test_repeated_system_prompt_shows_as_prefix_cache_hits(daemon: Daemon) -> None:
    client = openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)
    with AdminClient(daemon.admin_socket) as admin:
        before = admin.model_stats("smollm2")
        for question in ("Who are you?", "What can you do?"):
            client.chat.completions.create(
                model="smollm2",
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                ],
                max_tokens=2,
            )
        after = admin.model_stats("smollm2")
    assert after["prefix_cache_hits"] >= before["prefix_cache_hits"] + 1
    assert after["prefix_cache_tokens"] - before["prefix_cache_tokens"] > 300
    assert after["slots_total"] >= 1


def test_stats_of_a_model_that_is_not_installed_is_404(daemon: Daemon) -> None:
    transport = httpx.HTTPTransport(uds=str(daemon.admin_socket))
    with httpx.Client(transport=transport, base_url="http://appliance") as http:
        response = http.get("/admin/models/nope/stats")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["message"] == "model 'nope' is not installed; installed: smollm2"
    # The admin client turns the envelope into the matching error.
    with AdminClient(daemon.admin_socket) as admin, pytest.raises(ModelNotFound) as caught:
        admin.model_stats("nope")
    assert caught.value.message == error["message"]


@pytest.fixture(scope="module")
def one_slot_daemon(
    tmp_path_factory: pytest.TempPathFactory, embedded_model: Path
) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("oneslot")
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    handle = start_daemon(home, APPLIANCE_ENGINE__SLOTS="1", APPLIANCE_ENGINE__QUEUE_SIZE="0")
    yield handle
    stop_daemon(handle)


def test_requests_beyond_slots_and_queue_get_429_with_retry_after(one_slot_daemon: Daemon) -> None:
    daemon = one_slot_daemon
    headers = {"Authorization": f"Bearer {daemon.api_key}"}
    long_answer = {
        "model": "smollm2",
        "stream": True,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "logit_bias": {"0": -100, "2": -100},  # no end-of-text: the slot stays busy
    }

    async def scenario() -> httpx.Response:
        generating = asyncio.Event()

        async def keep_the_slot_busy(client: httpx.AsyncClient) -> None:
            url = f"{daemon.base_url}/chat/completions"
            async with client.stream("POST", url, json=long_answer, headers=headers) as busy:
                async for line in busy.aiter_lines():
                    if '"content"' in line:
                        generating.set()  # keep reading: hanging up would free the slot

        async with httpx.AsyncClient(timeout=60) as client:
            busy = asyncio.create_task(keep_the_slot_busy(client))
            await asyncio.wait_for(generating.wait(), 30)
            refused = await client.post(
                f"{daemon.base_url}/chat/completions",
                json={**long_answer, "stream": False, "max_tokens": 2},
                headers=headers,
            )
            # A streaming request is refused the same way, before any event is sent.
            refused_stream = await client.post(
                f"{daemon.base_url}/chat/completions", json=long_answer, headers=headers
            )
            busy.cancel()
            assert refused_stream.status_code == 429
            return refused

    refused = asyncio.run(scenario())
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_client_that_goes_away_frees_its_slot(daemon: Daemon) -> None:
    headers = {"Authorization": f"Bearer {daemon.api_key}"}
    body = {
        "model": "smollm2",
        "stream": True,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "Count from one to one thousand in words."}],
    }
    with httpx.stream(
        "POST", f"{daemon.base_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                break  # hang up after the first token
    with AdminClient(daemon.admin_socket) as admin:
        for _ in range(100):
            stats = admin.model_stats("smollm2")
            if stats["slots_busy"] == 0:
                break
            asyncio.run(asyncio.sleep(0.05))
    assert stats["slots_busy"] == 0, "the abandoned answer must stop, not run to 1000 tokens"
