"""Request bounds from `config.limits`, checked after parsing and before anything is allocated.

The body itself was bounded by the gate (`api/gate.py`) before it was parsed, so everything
here walks at most `limits.max_body_bytes` of data, iteratively (a deeply nested schema must
not blow the interpreter's stack before it is refused). Each check raises `UsageError` (400)
naming the field, the limit and the setting that holds it. Anything only the worker can know
(prompt tokens against the context, token ids against the vocabulary) is checked there.
May import the API's protocol modules, config and errors.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.api.openai.sampling import SamplingRequest
from appliance.config import LimitsSettings
from appliance.errors import UsageError


def over_limit(field: str, got: int, limit: int, setting: str, unit: str = "") -> UsageError:
    """The error for `field` over `limits.<setting>`, naming both."""
    what = f"{got:,}{unit}" if unit else f"{got:,}"
    return UsageError(
        f"{field}: {what} is more than the limit of {limit:,}{unit} (limits.{setting}); "
        "ask for less, or have the administrator raise the limit"
    )


def check_sampling(body: SamplingRequest, limits: LimitsSettings) -> None:
    """Bounds shared by chat and text completions."""
    if body.max_tokens is not None and body.max_tokens > limits.max_tokens:
        raise over_limit("max_tokens", body.max_tokens, limits.max_tokens, "max_tokens")
    if body.n > limits.max_choices:
        raise over_limit("n", body.n, limits.max_choices, "max_choices")
    stops = body.stop_list()
    if len(stops) > limits.max_stops:
        raise over_limit("stop", len(stops), limits.max_stops, "max_stops", " sequences")
    for stop in stops:
        if len(stop) > limits.max_stop_chars:
            raise over_limit(
                "stop", len(stop), limits.max_stop_chars, "max_stop_chars", " characters"
            )
    bias = body.logit_bias or {}
    if len(bias) > limits.max_logit_bias:
        raise over_limit(
            "logit_bias", len(bias), limits.max_logit_bias, "max_logit_bias", " entries"
        )
    if body.penalty_last_n > limits.max_penalty_last_n:
        raise over_limit(
            "penalty_last_n", body.penalty_last_n, limits.max_penalty_last_n, "max_penalty_last_n"
        )
    if body.grammar is not None and len(body.grammar.encode()) > limits.max_schema_bytes:
        raise over_limit(
            "grammar", len(body.grammar.encode()), limits.max_schema_bytes, "max_schema_bytes",
            " bytes",
        )  # fmt: skip
    if body.response_format is not None:
        fmt = body.response_format
        if fmt.json_schema is not None:
            check_schema("response_format.json_schema.schema", fmt.json_schema.schema_, limits)
        if fmt.schema_ is not None:
            check_schema("response_format.schema", fmt.schema_, limits)


def check_chat(body: ChatCompletionRequest, limits: LimitsSettings) -> None:
    if len(body.messages) > limits.max_messages:
        raise over_limit("messages", len(body.messages), limits.max_messages, "max_messages")
    if body.max_completion_tokens is not None and body.max_completion_tokens > limits.max_tokens:
        raise over_limit(
            "max_completion_tokens", body.max_completion_tokens, limits.max_tokens, "max_tokens"
        )
    if body.top_logprobs > limits.max_top_logprobs:
        raise over_limit(
            "top_logprobs", body.top_logprobs, limits.max_top_logprobs, "max_top_logprobs"
        )
    check_sampling(body, limits)
    for index, message in enumerate(body.messages):
        for number, call in enumerate(message.tool_calls or []):
            field = f"messages[{index}].tool_calls[{number}].function.arguments"
            check_nesting(field, call.function.arguments, limits)
    tools = body.tools or []
    if len(tools) > limits.max_tools:
        raise over_limit("tools", len(tools), limits.max_tools, "max_tools")
    for index, tool in enumerate(tools):
        check_schema(f"tools[{index}].function.parameters", tool.function.parameters, limits)
        # The whole definition reaches the chat template, unknown fields included.
        check_nesting(f"tools[{index}]", tool.model_extra or {}, limits)
        check_nesting(f"tools[{index}].function", tool.function.model_extra or {}, limits)
    if body.chat_template_kwargs is not None:
        check_nesting("chat_template_kwargs", body.chat_template_kwargs, limits)


def check_schema(field: str, schema: Any, limits: LimitsSettings) -> None:
    """A JSON schema the worker turns into a grammar: size, nesting, and only local `$ref`s."""
    _, refs = check_nesting(field, schema, limits)
    size = len(json.dumps(schema))
    if size > limits.max_schema_bytes:
        raise over_limit(field, size, limits.max_schema_bytes, "max_schema_bytes", " bytes")
    if len(refs) > limits.max_schema_refs:
        raise over_limit(f"{field} $ref", len(refs), limits.max_schema_refs, "max_schema_refs")
    for ref in refs:
        # The grammar converter would fetch an http(s) reference: from inside the appliance.
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UsageError(
                f"{field}: $ref {ref!r} points outside the schema; only local references "
                "('#/$defs/...') are allowed"
            )


def check_nesting(field: str, value: Any, limits: LimitsSettings) -> tuple[int, list[Any]]:
    """Depth of nested objects/arrays in `value` (walked without recursion), and its `$ref`s."""
    deepest = 0
    refs: list[Any] = []
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
            if "$ref" in item:
                refs.append(item["$ref"])
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limits.max_schema_depth:
            raise UsageError(
                f"{field}: nested deeper than the limit of {limits.max_schema_depth} levels "
                "(limits.max_schema_depth); flatten it"
            )
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest, refs
