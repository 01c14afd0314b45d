"""OpenAI request bodies → the engine's `Submit`: every field lands, bad values name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from appliance.api.openai.completions import CompletionRequest
from appliance.api.openai.embeddings import EmbeddingRequest, encode_vector
from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.api.openai.reasoning import ReasoningFormat

HI = [{"role": "user", "content": "Hi"}]


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": HI, **fields})


def test_every_sampling_field_reaches_the_engine_request() -> None:
    submit = chat(
        temperature=0.3, top_p=0.9, top_k=20, min_p=0.1, repeat_penalty=1.2,
        presence_penalty=0.5, frequency_penalty=-0.5, penalty_last_n=128, seed=7,
        stop="END", logit_bias={"15": -100, "42": 3.5}, n=3, logprobs=True, top_logprobs=4,
        max_completion_tokens=50, max_tokens=999,
    ).to_engine_request("r1", "PROMPT", 2048)  # fmt: skip
    assert (submit.id, submit.prompt, submit.max_tokens) == ("r1", "PROMPT", 50)
    assert (submit.temperature, submit.top_p, submit.top_k, submit.min_p) == (0.3, 0.9, 20, 0.1)
    assert (submit.repeat_penalty, submit.penalty_last_n) == (1.2, 128)
    assert (submit.presence_penalty, submit.frequency_penalty) == (0.5, -0.5)
    assert submit.stop == ["END"] and submit.seed == 7
    assert submit.logit_bias == {15: -100.0, 42: 3.5}
    assert (submit.n, submit.logprobs, submit.top_logprobs) == (3, True, 4)
    assert submit.json_schema is None and submit.grammar is None


def test_defaults_leave_the_engine_defaults_and_the_configured_length() -> None:
    submit = chat().to_engine_request("r", "P", 2048)
    assert submit.max_tokens == 2048 and submit.n == 1 and not submit.logprobs
    assert submit.reasoning_budget is None and not submit.prompt_opens_thinking


def test_vllm_and_llama_cpp_spellings_of_the_penalty_are_accepted() -> None:
    submit = chat(repetition_penalty=1.3, repeat_last_n=-1).to_engine_request("r", "P", 9)
    assert (submit.repeat_penalty, submit.penalty_last_n) == (1.3, -1)


def test_json_object_format_asks_for_any_object() -> None:
    submit = chat(response_format={"type": "json_object"}).to_engine_request("r", "P", 9)
    assert json.loads(submit.json_schema or "") == {"type": "object"}


def test_json_schema_format_passes_the_schema_text() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    body = chat(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        }
    )
    assert json.loads(body.to_engine_request("r", "P", 9).json_schema or "") == schema


def test_text_format_sets_no_constraint() -> None:
    assert chat(response_format={"type": "text"}).to_engine_request("r", "P", 9).json_schema is None


def test_reasoning_budget_maps_and_minus_one_means_unlimited() -> None:
    assert chat(reasoning_budget=100).to_engine_request("r", "P", 9).reasoning_budget == 100
    assert chat(reasoning_budget=-1).to_engine_request("r", "P", 9).reasoning_budget is None
    assert chat(reasoning_budget=0).thinking_disabled()
    assert chat(chat_template_kwargs={"enable_thinking": False}).thinking_disabled()


def test_reasoning_format_falls_back_to_the_configured_default() -> None:
    assert chat().reasoning(ReasoningFormat.OLLAMA) is ReasoningFormat.OLLAMA
    assert chat(reasoning_format="reasoning").reasoning(ReasoningFormat.DEEPSEEK).field == (
        "reasoning"
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"logit_bias": {"15": 101}}, "logit_bias"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"n": 0}, "n"),
        ({"top_k": -1}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"reasoning_format": "openai"}, "reasoning_format"),
        ({"reasoning_budget": -2}, "reasoning_budget"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        (
            {"grammar": 'root ::= "x"', "response_format": {"type": "json_object"}},
            "grammar",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        chat(**fields)
    errors = caught.value.errors()
    assert any(named in ".".join(map(str, e["loc"])) or named in e["msg"] for e in errors), errors


def test_text_completion_request_maps_legacy_logprobs_to_top_logprobs() -> None:
    body = CompletionRequest.model_validate(
        {"model": "m", "prompt": ["Once upon"], "logprobs": 3, "n": 2, "max_tokens": 5}
    )
    submit = body.to_engine_request("r", 2048)
    assert (submit.prompt, submit.logprobs, submit.top_logprobs) == ("Once upon", True, 3)
    assert (submit.n, submit.max_tokens) == (2, 5)


def test_text_completion_refuses_several_prompts() -> None:
    with pytest.raises(ValidationError, match="one prompt"):
        CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": [[1, 2, 3]]}, "token-id arrays"),
        ({"input": []}, "at least one"),
        ({"input": ["ok", ""]}, "empty"),
        ({"input": "x", "dimensions": 64}, "full vectors"),
    ],
)
def test_embedding_requests_outside_what_we_serve_are_refused(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        EmbeddingRequest.model_validate({"model": "m", **fields})


def test_embeddings_encode_as_floats_or_little_endian_float32_base64() -> None:
    import base64
    import struct

    assert encode_vector([0.5, -1.0], "float") == [0.5, -1.0]
    packed = base64.b64decode(encode_vector([0.5, -1.0], "base64"))  # type: ignore[arg-type]
    assert struct.unpack("<2f", packed) == (0.5, -1.0)
