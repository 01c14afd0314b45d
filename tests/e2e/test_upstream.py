"""Upstream models end to end: a front appliance forwarding to real OpenAI-compatible servers.

The upstreams are real servers on loopback: llama-cpp-python's own `llama_cpp.server` serving
SmolLM2, and a second appliance daemon (serving a tiny DeepSeek-R1-vocabulary model, whose
reasoning arrives in `reasoning_content`). The front daemon has no model of its own; clients
reach everything through it with its keys, and the failures are real ones: a server killed
mid-answer, one of two replicas stopped, a wrong upstream key.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gguf import GGUFReader

from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon
from helpers.llama_server import LlamaServer, start_llama_server
from helpers.tiny_gguf import EOS, write_tiny_llama

QUESTION = [{"role": "user", "content": "Name the capital of France."}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]
UPSTREAM_KEY = "upstream-secret-4f1c9a"


def token_id(model: Path, text: str) -> int:
    field = GGUFReader(model).fields["tokenizer.ggml.tokens"]
    return [bytes(field.parts[i]).decode() for i in field.data].index(text)


def start_front(home: Path, **env: str) -> Daemon:
    """An appliance with no model of its own (so never `ready`): wait for it to answer."""
    daemon = start_daemon(home, wait_ready=False, **env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{daemon.root_url}/health", timeout=2).status_code == 200:
                return daemon
        except httpx.TransportError:
            time.sleep(0.2)
    stop_daemon(daemon)
    raise AssertionError(f"front daemon never answered:\n{daemon.log()}")


def upstreams(front: Daemon) -> list[dict[str, Any]]:
    return json.loads(run_cli(front.home, "upstream", "list", "--json").stdout)


def wait_for(check: Any, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server_a(
    tmp_path_factory: pytest.TempPathFactory, embedded_model: Path
) -> Iterator[LlamaServer]:
    server = start_llama_server(embedded_model, tmp_path_factory.mktemp("llama-a"),
                                api_key=UPSTREAM_KEY)  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, server_a: LlamaServer) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("front-home")
    # Health checks only when added: what a test sees is what its own requests did.
    daemon = start_front(home, APPLIANCE_UPSTREAM__HEALTH_INTERVAL_S="600")
    try:
        run_cli(home, "upstream", "add", "smol-up", server_a.url, "--api-key", UPSTREAM_KEY)
        yield daemon
    finally:
        stop_daemon(daemon)


@pytest.fixture
def client(front: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=front.base_url, api_key=front.api_key, max_retries=0)


def test_an_upstream_name_is_listed_and_answers_like_a_local_model(
    front: Daemon, server_a: LlamaServer, client: openai.OpenAI
) -> None:
    assert "smol-up" in [m.id for m in client.models.list()]
    answer = client.chat.completions.create(
        model="smol-up", messages=QUESTION, temperature=0, max_tokens=24
    )
    # The upstream's own answer, asked directly with its own key (greedy: the same text).
    direct = openai.OpenAI(base_url=server_a.url, api_key=UPSTREAM_KEY, max_retries=0)
    expected = direct.chat.completions.create(
        model="smollm2-upstream", messages=QUESTION, temperature=0, max_tokens=24
    )
    assert answer.choices[0].message.content == expected.choices[0].message.content
    assert answer.model == "smol-up"
    assert answer.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="smol-up", messages=QUESTION, temperature=0, max_tokens=24, stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    pieces = [piece for piece in pieces if piece]
    assert len(pieces) >= 2, "the upstream's answer should stream through, not as one block"
    assert "".join(pieces) == expected.choices[0].message.content


def test_a_front_door_is_ready_once_an_upstream_answers(front: Daemon) -> None:
    ready = httpx.get(f"{front.root_url}/ready", timeout=10)
    assert ready.status_code == 200 and "smol-up" in ready.json()["models"]


def test_ollama_clients_reach_the_upstream_too(front: Daemon) -> None:
    headers = {"Authorization": f"Bearer {front.api_key}"}
    tags = httpx.get(f"{front.root_url}/api/tags", headers=headers, timeout=10).json()
    assert "smol-up" in [m["name"] for m in tags["models"]]
    answer = httpx.post(
        f"{front.root_url}/api/chat", headers=headers, timeout=120,
        json={"model": "smol-up", "messages": QUESTION, "stream": False,
              "options": {"temperature": 0, "num_predict": 24}},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["content"].strip()
    assert answer.json()["done"] is True


def test_upstream_traffic_is_metered_and_audited(front: Daemon, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="smol-up", messages=QUESTION, max_tokens=8)
    metrics = httpx.get(
        f"{front.root_url}/metrics", headers={"Authorization": f"Bearer {front.api_key}"}
    ).text
    assert 'appliance_completion_tokens_total{model="smol-up"}' in metrics
    assert 'appliance_time_to_first_token_seconds_count{model="smol-up"}' in metrics
    assert f'appliance_upstream_up{{model="smol-up",url="{upstreams(front)[0]["url"]}"}} 1.0' in (
        metrics
    )
    audit = json.loads(run_cli(front.home, "audit", "--model", "smol-up", "--json").stdout)
    assert audit and all(entry["model"] == "smol-up" for entry in audit)
    assert any(entry["tokens_out"] > 0 and entry["status"] == 200 for entry in audit)


def test_a_key_not_allowed_the_upstream_model_is_refused(front: Daemon) -> None:
    key = run_cli(front.home, "keys", "create", "--name", "local-only", "--json").stdout
    secret = json.loads(key)["key"]
    run_cli(front.home, "keys", "limit", "local-only", "--models", "some-local-model")
    limited = openai.OpenAI(base_url=front.base_url, api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="may not use model 'smol-up'"):
        limited.chat.completions.create(model="smol-up", messages=QUESTION, max_tokens=4)


def test_the_upstream_key_is_kept_private(front: Daemon) -> None:
    listing = run_cli(front.home, "upstream", "list").stdout + json.dumps(upstreams(front))
    assert UPSTREAM_KEY not in listing
    assert upstreams(front)[0]["has_api_key"] is True
    stored = front.home / "upstreams.json"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600


def test_a_wrong_upstream_key_is_a_clear_error_naming_the_upstream(
    front: Daemon, server_a: LlamaServer, client: openai.OpenAI
) -> None:
    added = run_cli(front.home, "upstream", "add", "smol-badkey", server_a.url, "--api-key", "nope")
    assert "refused the API key" in added.stderr
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="smol-badkey", messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 502
    message = caught.value.message
    assert "smol-badkey" in message and server_a.url in message
    assert "refused the appliance's API key" in message and "--api-key" in message
    run_cli(front.home, "upstream", "rm", "smol-badkey")
    assert "smol-badkey" not in [m.id for m in client.models.list()]


def test_closing_the_stream_closes_the_upstream_request(
    front: Daemon, client: openai.OpenAI
) -> None:
    with client.chat.completions.create(
        model="smol-up", messages=STORY, max_tokens=1500, stream=True
    ) as stream:
        for n, _chunk in enumerate(stream):
            if n == 3:
                assert upstreams(front)[0]["in_flight"] == 1
                break
    wait_for(lambda: upstreams(front)[0]["in_flight"] == 0, "the upstream request to end")
    # llama_cpp.server answers one request at a time: this one is answered only because the
    # 1500-token story was stopped when its client went away.
    answer = client.chat.completions.create(
        model="smol-up", messages=QUESTION, temperature=0, max_tokens=8, timeout=60
    )
    assert answer.choices[0].message.content


def test_one_of_two_replicas_stopped_the_other_answers(
    front: Daemon, server_a: LlamaServer, embedded_model: Path, tmp_path: Path,
    client: openai.OpenAI,
) -> None:  # fmt: skip
    server_b = start_llama_server(embedded_model, tmp_path, alias="smollm2-b")
    try:
        # B first: with nothing in flight anywhere, the first replica listed is tried first.
        run_cli(front.home, "upstream", "add", "smol-pair", server_b.url, "--model", "smollm2-b")
        run_cli(front.home, "upstream", "add", "smol-pair", server_a.url, "--api-key", UPSTREAM_KEY)
        pair = [u for u in upstreams(front) if u["name"] == "smol-pair"]
        assert [u["health"] for u in pair] == ["up", "up"]
        server_b.kill()
        answer = client.chat.completions.create(
            model="smol-pair", messages=QUESTION, temperature=0, max_tokens=24
        )
        assert answer.choices[0].message.content
        pair = {u["url"]: u for u in upstreams(front) if u["name"] == "smol-pair"}
        assert pair[server_b.url]["health"] == "down"
        assert "connection refused" in pair[server_b.url]["error"]
        assert pair[server_a.url]["health"] == "up" and pair[server_a.url]["requests"] == 1
        assert f"upstream 'smol-pair' at {server_b.url} failed before answering" in front.log()
        # Both gone: the error names each server and why.
        run_cli(front.home, "upstream", "rm", "smol-pair", "--url", server_a.url)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="smol-pair", messages=QUESTION, max_tokens=4)
        assert caught.value.status_code == 502
        assert f"{server_b.url}: connection refused" in caught.value.message
    finally:
        server_b.kill()
        run_cli(front.home, "upstream", "rm", "smol-pair", check=False)


def test_an_upstream_killed_mid_answer_ends_the_stream_with_an_error(
    front: Daemon, embedded_model: Path, tmp_path: Path
) -> None:
    server = start_llama_server(embedded_model, tmp_path, alias="smollm2-c")
    try:
        run_cli(front.home, "upstream", "add", "smol-dies", server.url, "--model", "smollm2-c")
        no_end = {str(token_id(embedded_model, "<|im_end|>")): -100}
        body = {"model": "smol-dies", "messages": STORY, "max_tokens": 1500, "stream": True,
                "logit_bias": no_end}  # fmt: skip
        lines: list[str] = []
        with httpx.stream(
            "POST", f"{front.base_url}/chat/completions", json=body, timeout=120,
            headers={"Authorization": f"Bearer {front.api_key}"},
        ) as response:  # fmt: skip
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                if sum('"content"' in seen for seen in lines) == 5:
                    server.kill()
        events = [json.loads(ln[5:]) for ln in lines if ln.startswith("data: {")]
        errors = [e["error"] for e in events if "error" in e]
        assert len(errors) == 1, lines[-5:]
        assert (
            "smol-dies" in errors[0]["message"]
            and "in the middle of the answer" in (errors[0]["message"])
        )
        assert [ln for ln in lines if ln][-1] == "data: [DONE]"
        assert [u["health"] for u in upstreams(front) if u["name"] == "smol-dies"] == ["down"]
    finally:
        server.kill()
        run_cli(front.home, "upstream", "rm", "smol-dies", check=False)


def test_upstream_names_cannot_shadow_installed_models_or_be_malformed(front: Daemon) -> None:
    bad = run_cli(front.home, "upstream", "add", "x", "ftp://example", check=False)
    assert bad.returncode != 0 and "not an http(s) URL" in bad.stderr
    missing = run_cli(front.home, "upstream", "rm", "never-added", check=False)
    assert missing.returncode != 0 and "no upstream 'never-added'" in missing.stderr


@pytest.fixture(scope="module")
def thinking_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    """A second appliance serving a tiny DeepSeek-R1-vocabulary model (random weights)."""
    home = tmp_path_factory.mktemp("upstream-appliance")
    model = write_tiny_llama(home / "tiny-r1.gguf")
    run_cli(home, "models", "import", str(model), "--name", "tiny-r1")
    daemon = start_daemon(home)
    yield daemon, model
    stop_daemon(daemon)


def test_another_appliance_as_upstream_with_reasoning_in_the_callers_field(
    front: Daemon, thinking_upstream: tuple[Daemon, Path]
) -> None:
    upstream, model = thinking_upstream
    run_cli(front.home, "upstream", "add", "r1-remote", upstream.base_url,
            "--api-key", upstream.api_key, "--model", "tiny-r1")  # fmt: skip
    steer = {str(token_id(model, tag)): -100 for tag in (EOS, "<think>", "</think>")}
    body = {"model": "r1-remote", "messages": [{"role": "user", "content": "hi"}], "seed": 11,
            "logit_bias": steer, "reasoning_budget": 4, "max_tokens": 12}  # fmt: skip
    headers = {"Authorization": f"Bearer {front.api_key}"}
    # The upstream appliance sends `reasoning_content`; this caller asked for vLLM's field.
    answer = httpx.post(f"{front.base_url}/chat/completions", headers=headers, timeout=60,
                        json={**body, "reasoning_format": "vllm"}).json()  # fmt: skip
    message = answer["choices"][0]["message"]
    assert message["reasoning"] and message["content"], message
    assert "reasoning_content" not in message and "<think>" not in message["content"]
    # And the other way: the DeepSeek field, streamed.
    with httpx.stream("POST", f"{front.base_url}/chat/completions", headers=headers,
                      json={**body, "stream": True}, timeout=60) as response:  # fmt: skip
        events = [json.loads(ln[5:]) for ln in response.iter_lines() if ln.startswith("data: {")]
    deltas = [event["choices"][0]["delta"] for event in events if event.get("choices")]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == message["reasoning"]
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]


def test_health_checks_mark_an_upstream_down_and_back_up(
    tmp_path: Path, embedded_model: Path
) -> None:
    (tmp_path / "home").mkdir()
    front = start_front(tmp_path / "home", APPLIANCE_UPSTREAM__HEALTH_INTERVAL_S="0.5")
    try:
        server = start_llama_server(embedded_model, tmp_path)
    except BaseException:
        stop_daemon(front)
        raise
    try:
        run_cli(front.home, "upstream", "add", "smol-flaky", server.url)

        def health() -> str:
            return upstreams(front)[0]["health"]

        assert health() == "up"
        server.kill()
        wait_for(lambda: health() == "down", "the health check to notice the server is gone")
        assert "connection refused" in run_cli(front.home, "status").stdout
        server = start_llama_server(embedded_model, tmp_path, port=server.port)
        wait_for(lambda: health() == "up", "the health check to notice the server is back")
        assert upstreams(front)[0]["latency_ms"] is not None
    finally:
        server.kill()
        stop_daemon(front)
