"""Operations over real sockets: /metrics, the audit log, per-key limits, fair share."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.daemon import Daemon, free_port, run_cli, start_daemon, stop_daemon
from helpers.tiny_gguf import write_tiny_llama

ASK = {"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}


def new_key(daemon: Daemon, name: str, *limit_args: str) -> str:
    created = run_cli(daemon.home, "keys", "create", "--name", name, "--json")
    if limit_args:
        run_cli(daemon.home, "keys", "limit", name, *limit_args)
    return json.loads(created.stdout)["key"]


def chat(daemon: Daemon, key: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(f"{daemon.base_url}/chat/completions", json=body or ASK,
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip


def sample(text: str, name: str) -> float:
    """The value of one sample in a Prometheus text scrape (fails if it is missing)."""
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} is not in the scrape"
    return float(values[0])


def test_metrics_need_a_key_and_show_requests_latency_tokens_slots_and_devices(
    daemon: Daemon,
) -> None:
    assert chat(daemon, daemon.api_key).status_code == 200
    assert httpx.get(f"{daemon.root_url}/metrics").status_code == 401
    scrape = httpx.get(f"{daemon.root_url}/metrics",
                       headers={"Authorization": f"Bearer {daemon.api_key}"})  # fmt: skip
    text = scrape.text
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    assert 'appliance_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert 'appliance_time_to_first_token_seconds_count{model="smollm2"}' in text
    assert 'appliance_completion_tokens_total{model="smollm2"}' in text
    assert 'appliance_slots{model="smollm2"}' in text
    assert 'appliance_queue_depth{model="smollm2"} 0.0' in text
    assert 'appliance_model_load_seconds{model="smollm2"}' in text
    assert 'appliance_prefix_cache_hits_total{model="smollm2"}' in text
    # Speculative decoding's guesses, by source: never more kept than decoded.
    for source in ("lookup", "model"):
        labels = f'{{model="smollm2",source="{source}"}}'
        drafted = sample(text, f"appliance_draft_tokens_total{labels}")
        assert 0 <= sample(text, f"appliance_draft_accepted_tokens_total{labels}") <= drafted
    assert 'appliance_device_memory_total_bytes{device="cpu0"}' in text


def test_metrics_on_their_own_address_need_no_key_and_leave_the_lan_api(tmp_path: Path) -> None:
    port = free_port()
    daemon = start_daemon(tmp_path, wait_ready=False,
                          APPLIANCE_METRICS__LISTEN=f"127.0.0.1:{port}")  # fmt: skip
    try:
        assert f"http://127.0.0.1:{port}/metrics" in daemon.banner
        for _ in range(50):
            try:
                scrape = httpx.get(f"http://127.0.0.1:{port}/metrics")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert scrape.status_code == 200 and "appliance_requests_total" in scrape.text
        keyed = httpx.get(f"{daemon.root_url}/metrics",
                          headers={"Authorization": f"Bearer {daemon.api_key}"})  # fmt: skip
        assert keyed.status_code == 404
    finally:
        stop_daemon(daemon)


def test_audit_log_records_key_route_model_tokens_and_status_but_no_prompt(
    daemon: Daemon,
) -> None:
    key = new_key(daemon, "auditor")
    assert chat(daemon, key).status_code == 200
    for _ in range(50):  # the row is written after the response ends
        rows = json.loads(run_cli(daemon.home, "audit", "--key", "auditor", "--json").stdout)
        if rows:
            break
        time.sleep(0.1)
    [row] = rows
    assert row["route"] == "/v1/chat/completions" and row["model"] == "smollm2"
    assert row["status"] == 200 and row["tokens_in"] > 5 and 0 < row["tokens_out"] <= 4
    assert row["duration_s"] > 0 and row["prompt"] is None


def test_a_key_limited_to_other_models_gets_403_naming_what_it_may_use(daemon: Daemon) -> None:
    key = new_key(daemon, "narrow", "--models", "deepseek-r1")
    refused = chat(daemon, key)
    assert refused.status_code == 403
    assert "deepseek-r1" in refused.json()["error"]["message"]


def test_requests_per_minute_answer_429_with_retry_after_naming_the_limit(
    daemon: Daemon,
) -> None:
    key = new_key(daemon, "slow", "--rpm", "2")
    assert [chat(daemon, key).status_code for _ in range(2)] == [200, 200]
    refused = chat(daemon, key)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "requests_per_minute" in refused.json()["error"]["message"]
    assert chat(daemon, daemon.api_key).status_code == 200  # other keys unaffected


def test_tokens_per_day_stop_a_key_once_spent(daemon: Daemon) -> None:
    key = new_key(daemon, "thrifty", "--tokens-per-day", "10")
    assert chat(daemon, key).status_code == 200  # spends the prompt and the answer
    for _ in range(50):
        refused = chat(daemon, key)
        if refused.status_code == 429:
            break
        time.sleep(0.1)  # until the first request's audit row is written
    assert refused.status_code == 429
    assert "tokens_per_day" in refused.json()["error"]["message"]


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("fair")
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    # A second, tiny model: what a key's allow-list hides, and what must not get loaded.
    run_cli(home, "models", "import", str(write_tiny_llama(home / "tiny.gguf")), "--name", "tiny")
    handle = start_daemon(home, APPLIANCE_ENGINE__SLOTS="1", APPLIANCE_ENGINE__QUEUE_SIZE="8",
                          APPLIANCE_DEFAULT_MODEL="smollm2")  # fmt: skip
    yield handle
    stop_daemon(handle)


def test_a_flooding_key_cannot_starve_another_of_a_scarce_slot(one_slot: Daemon) -> None:
    flood, office = new_key(one_slot, "script"), new_key(one_slot, "office")
    body = {**ASK, "stream": True, "max_tokens": 64, "logit_bias": {"0": -100, "2": -100}}
    first_text: list[str] = []

    async def ask(client: httpx.AsyncClient, key: str, who: str) -> None:
        url = f"{one_slot.base_url}/chat/completions"
        async with client.stream(
            "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}
        ) as answer:
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                # The first chunk (role, empty content) comes at once; text only with a slot.
                if not line.startswith("data: {") or who in first_text:
                    continue
                choices = json.loads(line.removeprefix("data: "))["choices"]
                if choices and choices[0]["delta"].get("content"):
                    first_text.append(who)

    async def scenario() -> None:
        # Generous: llama.cpp's spinning threads crawl on an oversubscribed CI machine.
        async with httpx.AsyncClient(timeout=600) as client:
            script = [asyncio.create_task(ask(client, flood, f"script{i}")) for i in range(4)]
            # The office asks once the script holds the slot (its other three then wait): a fixed
            # pause raced a first answer that finished before the office was even queued.
            while not first_text:
                await asyncio.sleep(0.02)
            person = asyncio.create_task(ask(client, office, "office"))
            await asyncio.gather(*script, person)

    asyncio.run(scenario())
    # One slot: the script's first request runs; the office is served next, not fifth.
    assert first_text.index("office") <= 1, first_text


def loaded_models(daemon: Daemon) -> list[str]:
    running = httpx.get(f"{daemon.root_url}/api/ps",
                        headers={"Authorization": f"Bearer {daemon.api_key}"}).json()  # fmt: skip
    return [m["model"] for m in running["models"]]


def test_listings_show_a_key_only_its_allowed_models(one_slot: Daemon) -> None:
    key = new_key(one_slot, "smol-only", "--models", "smollm2")
    auth = {"Authorization": f"Bearer {key}"}
    openai_ids = [m["id"] for m in httpx.get(f"{one_slot.base_url}/models", headers=auth)
                  .json()["data"]]  # fmt: skip
    ollama_names = [m["name"] for m in httpx.get(f"{one_slot.root_url}/api/tags", headers=auth)
                    .json()["models"]]  # fmt: skip
    assert openai_ids == ["smollm2"] and ollama_names == ["smollm2"]
    everything = httpx.get(f"{one_slot.base_url}/models",
                           headers={"Authorization": f"Bearer {one_slot.api_key}"})  # fmt: skip
    assert sorted(m["id"] for m in everything.json()["data"]) == ["smollm2", "tiny"]
    hidden = httpx.get(f"{one_slot.base_url}/models/tiny", headers=auth)
    assert hidden.status_code == 403 and "smollm2" in hidden.json()["error"]["message"]


def test_a_refused_key_does_not_make_the_box_load_a_model(one_slot: Daemon) -> None:
    narrow = new_key(one_slot, "no-tiny", "--models", "smollm2")
    refused = chat(one_slot, narrow, {**ASK, "model": "tiny"})
    assert refused.status_code == 403
    spent = new_key(one_slot, "one-a-minute", "--rpm", "1")
    assert chat(one_slot, spent).status_code == 200
    over = chat(one_slot, spent, {**ASK, "model": "tiny"})
    assert over.status_code == 429 and "requests_per_minute" in over.json()["error"]["message"]
    assert loaded_models(one_slot) == ["smollm2"]
