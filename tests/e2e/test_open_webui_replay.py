"""Requests in the shapes Open WebUI sends, replayed against the daemon.

Open WebUI talks to an "Ollama connection" with `/api/version`, `/api/tags`, `/api/ps`,
`/api/show`, then `/api/chat` with its own payload: OpenAI-style options moved into Ollama's
`options` (plus fields it sends whether or not a server knows them, such as `num_ctx`),
`stream` on for chats and off for title generation, and tool results as `tool` messages.
"""

from __future__ import annotations

import json

import httpx
import pytest

from helpers.daemon import Daemon


@pytest.fixture
def http(daemon: Daemon) -> httpx.Client:
    return httpx.Client(base_url=daemon.root_url, timeout=60,
                        headers={"Authorization": f"Bearer {daemon.api_key}"})  # fmt: skip


def test_connection_check_and_model_list(http: httpx.Client) -> None:
    assert http.get("/api/version").json()["version"]
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert names == ["smollm2"]
    assert http.get("/api/ps").status_code == 200
    assert http.post("/api/show", json={"model": "smollm2"}).json()["details"]["family"]


def test_streamed_chat_with_its_options_payload(http: httpx.Client) -> None:
    payload = {
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name the capital of France."},
        ],
        "stream": True,
        "options": {"temperature": 0, "top_p": 0.9, "num_predict": 24, "num_ctx": 2048,
                    "use_mmap": True, "repeat_last_n": 64, "seed": 7},
        "keep_alive": "5m",
        "metadata_ignored_by_servers": {"chat_id": "x"},
    }  # fmt: skip
    with http.stream("POST", "/api/chat", json=payload) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] > 0
    assert "Paris" in "".join(line["message"]["content"] for line in lines)


def test_title_generation_without_streaming(http: httpx.Client) -> None:
    payload = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Create a concise, 3-5 word title for: "
                      "How do I bake bread?"}],
        "stream": False,
        "options": {"num_predict": 12, "temperature": 0.1},
    }  # fmt: skip
    answer = http.post("/api/chat", json=payload).json()
    assert answer["done"] is True and answer["message"]["content"].strip()


def test_tool_result_turn_and_json_format(http: httpx.Client) -> None:
    payload = {
        "model": "smollm2",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": '{"sky": "sunny"}'},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "format": "json",
        "stream": False,
        "options": {"num_predict": 40, "temperature": 0},
    }  # fmt: skip
    answer = http.post("/api/chat", json=payload).json()
    assert isinstance(json.loads(answer["message"]["content"]), dict)


def test_openai_connection_shape_with_stream_usage(daemon: Daemon) -> None:
    payload = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 8,
        "metadata": {"chat_id": "x"},
    }
    with httpx.stream(
        "POST",
        f"{daemon.base_url}/chat/completions",
        json=payload,
        timeout=60,
        headers={"Authorization": f"Bearer {daemon.api_key}"},
    ) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] > 0
    model = httpx.get(f"{daemon.base_url}/models/smollm2",
                      headers={"Authorization": f"Bearer {daemon.api_key}"}).json()  # fmt: skip
    assert model == {**model, "id": "smollm2", "object": "model"}
