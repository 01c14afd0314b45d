"""Request bounds (`config.limits`): each refuses with a 400 naming the field and the setting."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.api.openai.completions import CompletionRequest
from appliance.api.openai.limits import check_chat, check_sampling
from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.config import LimitsSettings
from appliance.errors import UsageError

HI = [{"role": "user", "content": "Hi"}]
LIMITS = LimitsSettings()


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": HI, **fields})


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep, built without recursion."""
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        value = {"anyOf": value}
    return value


def tool(parameters: dict[str, Any], name: str = "f") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


@pytest.mark.parametrize(
    ("fields", "field", "setting"),
    [
        ({"messages": HI * 1025}, "messages", "max_messages"),
        ({"max_tokens": 32769}, "max_tokens", "max_tokens"),
        ({"max_completion_tokens": 10**9}, "max_completion_tokens", "max_tokens"),
        ({"n": 9}, "n", "max_choices"),
        ({"top_logprobs": 21}, "top_logprobs", "max_top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "max_stops"),
        ({"stop": "x" * 257}, "stop", "max_stop_chars"),
        ({"logit_bias": {str(i): 1 for i in range(1025)}}, "logit_bias", "max_logit_bias"),
        ({"penalty_last_n": 2**31 - 1}, "penalty_last_n", "max_penalty_last_n"),
        ({"grammar": "root ::= " + '"x" ' * 20000}, "grammar", "max_schema_bytes"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": nested(33)}}},
            "response_format.json_schema.schema",
            "max_schema_depth",
        ),
        (
            {"response_format": {"type": "json_object", "schema": {"enum": ["x" * 70000]}}},
            "response_format.schema",
            "max_schema_bytes",
        ),
        (
            {"response_format": {"type": "json_object", "schema": {
                "anyOf": [{"$ref": "#/$defs/a"}] * 65, "$defs": {"a": {"type": "string"}}}}},
            "response_format.schema $ref",
            "max_schema_refs",
        ),
        ({"tools": [tool({}, f"f{i}") for i in range(129)]}, "tools", "max_tools"),
        ({"tools": [tool(nested(40))]}, "tools[0].function.parameters", "max_schema_depth"),
        ({"chat_template_kwargs": nested(40)}, "chat_template_kwargs", "max_schema_depth"),
        (
            {"messages": [*HI, {"role": "assistant", "tool_calls": [
                {"function": {"name": "f", "arguments": nested(40)}}]}]},
            "messages[1].tool_calls[0].function.arguments",
            "max_schema_depth",
        ),
    ],
)  # fmt: skip
def test_each_bound_is_refused_naming_the_field_and_its_setting(
    fields: dict[str, Any], field: str, setting: str
) -> None:
    with pytest.raises(UsageError) as caught:
        check_chat(chat(**fields), LIMITS)
    assert caught.value.http_status == 400
    assert caught.value.message.startswith(f"{field}:")
    assert setting in caught.value.message


def test_requests_at_the_limits_pass() -> None:
    check_chat(
        chat(
            n=8, top_logprobs=20, stop=["a", "b", "c", "d"], penalty_last_n=8192,
            logit_bias={str(i): 1 for i in range(1024)}, max_tokens=32768,
            response_format={"type": "json_schema", "json_schema": {"schema": nested(32)}},
        ),
        LIMITS,
    )  # fmt: skip


def test_minus_one_means_the_whole_context_and_is_always_allowed() -> None:
    check_chat(chat(penalty_last_n=-1), LimitsSettings(max_penalty_last_n=0))


def test_a_remote_ref_is_refused_before_the_grammar_converter_could_fetch_it() -> None:
    schema = {"$ref": "https://example.com/schema.json"}
    with pytest.raises(UsageError, match="points outside the schema"):
        check_chat(chat(response_format={"type": "json_object", "schema": schema}), LIMITS)


def test_a_schema_nested_far_beyond_the_stack_is_refused_without_recursion() -> None:
    # 100,000 levels would overflow json.dumps or any recursive walk.
    with pytest.raises(UsageError, match="nested deeper than the limit of 32"):
        check_chat(chat(tools=[tool(nested(100_000))]), LIMITS)


def test_limits_come_from_the_configuration() -> None:
    body = chat(n=3)
    check_chat(body, LIMITS)
    expected = r"n: 3 is more than the limit of 2 \(limits.max_choices\)"
    with pytest.raises(UsageError, match=expected):
        check_chat(body, LimitsSettings(max_choices=2))


def test_text_completions_share_the_sampling_bounds() -> None:
    body = CompletionRequest.model_validate({"model": "m", "prompt": "x", "n": 9})
    with pytest.raises(UsageError, match="max_choices"):
        check_sampling(body, LIMITS)
