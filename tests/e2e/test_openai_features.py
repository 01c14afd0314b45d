"""The OpenAI API's richer features through the official client, against the real daemon.

Structured output, n choices, logprobs, forced tool calls, text completions and embeddings,
with SmolLM2-135M in a real worker (the session `daemon` fixture).
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
import pytest

from helpers.daemon import Daemon

QUESTION = [{"role": "user", "content": "Name the capital of France."}]
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def client(daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)


def test_json_schema_response_format_yields_json_that_matches_the_schema(
    client: openai.OpenAI,
) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=60,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True}},
    )  # fmt: skip
    data = json.loads(answer.choices[0].message.content)
    assert set(data) == {"city", "population"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


def test_json_object_response_format_yields_a_json_object(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=40,
        response_format={"type": "json_object"},
    )  # fmt: skip
    content = answer.choices[0].message.content
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # cut by max_tokens: still an object being written
        assert content.lstrip().startswith("{")


def test_n_two_gives_two_choices_in_index_order_with_summed_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=QUESTION, n=2, temperature=1.0, seed=5, max_tokens=12
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.message.content and c.finish_reason in ("stop", "length") for c in answer.choices)
    assert answer.usage.completion_tokens >= 2
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_n_two_streams_both_choices_and_ends_after_both_finish(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2", messages=QUESTION, n=2, temperature=1.0, seed=5, max_tokens=12,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    texts: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, list[str]] = {0: [], 1: []}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index].append(choice.finish_reason)
    assert texts[0] and texts[1]
    assert all(len(reasons) == 1 for reasons in finishes.values()), finishes
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 2


def test_logprobs_have_openai_shape_and_spell_out_the_answer(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=10,
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    choice = answer.choices[0]
    items = choice.logprobs.content
    assert len(items) == answer.usage.completion_tokens
    assert "".join(item.token for item in items) == choice.message.content
    for item in items:
        assert item.logprob <= 0 and item.bytes == list(item.token.encode())
        assert len(item.top_logprobs) == 3
        tops = [top.logprob for top in item.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # Greedy decoding picks the most likely token.
        assert math.isclose(item.logprob, tops[0], abs_tol=1e-4)


def test_streamed_chunks_carry_the_logprobs_of_their_tokens(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=8, stream=True,
        logprobs=True, top_logprobs=1,
    )  # fmt: skip
    text, tokens = "", ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            tokens += "".join(item.token for item in chunk.choices[0].logprobs.content)
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text and tokens == text


def test_named_tool_choice_makes_the_model_call_that_tool_with_valid_arguments(
    client: openai.OpenAI,
) -> None:
    answer = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=60, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_required_tool_choice_streams_the_call_as_a_tool_call_delta(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=80, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tool_choice="required", stream=True,
    )  # fmt: skip
    calls: list[Any] = []
    finishes = []
    for chunk in stream:
        for choice in chunk.choices:
            calls += choice.delta.tool_calls or []
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert finishes == ["tool_calls"]
    assert calls and calls[0].index == 0 and calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments)


def test_a_conversation_with_tool_calls_and_results_is_answered(client: openai.OpenAI) -> None:
    history = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]  # fmt: skip
    answer = client.chat.completions.create(
        model="smollm2", messages=history, tools=[WEATHER_TOOL], temperature=0, max_tokens=20
    )
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls


def test_text_completion_continues_the_prompt_with_legacy_logprobs(client: openai.OpenAI) -> None:
    answer = client.completions.create(
        model="smollm2", prompt="The capital of France is", temperature=0, max_tokens=6,
        logprobs=2,
    )  # fmt: skip
    choice = answer.choices[0]
    assert "Paris" in choice.text
    assert "".join(choice.logprobs.tokens) == choice.text
    assert len(choice.logprobs.tokens) == answer.usage.completion_tokens
    assert all(len(top) <= 2 for top in choice.logprobs.top_logprobs)
    assert choice.logprobs.text_offset[0] == 0


def test_streamed_text_completion_ends_with_a_finish_reason(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="smollm2", prompt="The capital of France is", temperature=0, max_tokens=6,
        stream=True,
    )  # fmt: skip
    chunks = list(stream)
    assert "Paris" in "".join(c.choices[0].text for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]


def test_embeddings_are_unit_vectors_one_per_input(client: openai.OpenAI) -> None:
    # The client asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model="smollm2", input=["The cat sleeps.", "Stocks fell."])
    first, second = (item.embedding for item in result.data)
    assert [item.index for item in result.data] == [0, 1]
    assert len(first) == len(second) > 100
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-4)
    assert first != second
    assert result.usage.prompt_tokens > 4


def test_embeddings_of_one_string_as_floats(daemon: Daemon) -> None:
    response = httpx.post(
        f"{daemon.base_url}/embeddings",
        json={"model": "smollm2", "input": "hello", "encoding_format": "float"},
        headers={"Authorization": f"Bearer {daemon.api_key}"},
        timeout=60,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "smollm2"
    assert len(body["data"]) == 1 and isinstance(body["data"][0]["embedding"][0], float)


@pytest.mark.parametrize(
    ("path", "fields", "expected"),
    [
        ("chat/completions", {"logit_bias": {"15": 200}}, "logit_bias"),
        ("chat/completions", {"top_logprobs": 21}, "top_logprobs"),
        ("chat/completions", {"n": 9}, "n"),
        ("chat/completions", {"response_format": {"type": "json_schema"}}, "response_format"),
        ("chat/completions", {"tool_choice": "required"}, "tool_choice"),
        ("chat/completions", {"reasoning_format": "xml"}, "reasoning_format"),
        ("completions", {"prompt": ["a", "b"]}, "prompt"),
        ("embeddings", {"input": [[1, 2]]}, "input"),
    ],
)
def test_out_of_range_fields_answer_400_naming_the_field(
    daemon: Daemon, path: str, fields: dict[str, Any], expected: str
) -> None:
    body: dict[str, Any] = {"model": "smollm2"}
    body.update({"chat/completions": {"messages": QUESTION}, "completions": {"prompt": "x"},
                 "embeddings": {"input": "x"}}[path])  # fmt: skip
    body.update(fields)
    response = httpx.post(
        f"{daemon.base_url}/{path}", json=body,
        headers={"Authorization": f"Bearer {daemon.api_key}"},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and expected in error["message"]
