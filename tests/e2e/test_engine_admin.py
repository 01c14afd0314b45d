"""Engine behaviour seen from outside: live stats, prefix-cache hits, and the 429 limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from appliance.client import AdminClient
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
    with AdminClient(daemon.admin_socket) as admin, pytest.raises(Exception, match="nope"):
        admin.model_stats("nope")


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
    }

    async def scenario() -> httpx.Response:
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream(
                "POST", f"{daemon.base_url}/chat/completions", json=long_answer, headers=headers
            ) as busy,
        ):
            async for line in busy.aiter_lines():
                if '"content"' in line:
                    break  # the only slot is now generating
            return await client.post(
                f"{daemon.base_url}/chat/completions",
                json={**long_answer, "stream": False, "max_tokens": 2},
                headers=headers,
            )

    refused = asyncio.run(scenario())
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["type"] == "rate_limit_error"
