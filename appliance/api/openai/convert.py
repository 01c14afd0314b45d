"""Engine results → OpenAI wire JSON (one function per shape), and errors → the OpenAI envelope."""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel

from appliance.api.openai.choices import ChoiceEvent, ChoiceOutput
from appliance.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    DeltaMessage,
    FunctionCallOut,
    ResponseMessage,
    TokenLogprobOut,
    ToolCallDelta,
    ToolCallOut,
    TopLogprobOut,
    Usage,
)
from appliance.api.openai.reasoning import ReasoningFormat
from appliance.engine.messages import Done, TokenLogprob
from appliance.errors import ApplianceError


def usage_of(dones: Iterable[Done]) -> Usage:
    """One usage for all choices: the prompt counted once, completions summed (as OpenAI)."""
    dones = list(dones)
    prompt = max((d.prompt_tokens for d in dones), default=0)
    completion = sum(d.completion_tokens for d in dones)
    cached = max((d.cached_tokens for d in dones), default=0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details={"cached_tokens": cached},
    )


def logprobs_out(items: list[TokenLogprob]) -> list[TokenLogprobOut]:
    return [
        TokenLogprobOut(
            token=item.token,
            logprob=item.logprob,
            bytes=list(item.token.encode()),
            top_logprobs=[
                TopLogprobOut(token=top.token, logprob=top.logprob, bytes=list(top.token.encode()))
                for top in item.top
            ],
        )
        for item in items
    ]


def _reasoning_fields(fmt: ReasoningFormat, text: str) -> dict[str, str]:
    return {fmt.field: text} if fmt.field and text else {}


def completion(
    completion_id: str,
    model: str,
    outputs: list[ChoiceOutput],
    *,
    reasoning: ReasoningFormat,
    logprobs: bool,
) -> ChatCompletion:
    choices = []
    for out in sorted(outputs, key=lambda o: o.index):
        assert out.done is not None
        calls = [
            ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
            for c in out.tool_calls
        ]
        message = ResponseMessage(
            content=out.content if out.content or not calls else None,
            tool_calls=calls or None,
            **_reasoning_fields(reasoning, out.reasoning),
        )
        choices.append(
            Choice(
                index=out.index,
                message=message,
                finish_reason=out.finish_reason,
                logprobs=ChoiceLogprobs(content=logprobs_out(out.logprobs)) if logprobs else None,
            )
        )
    return ChatCompletion(
        id=completion_id,
        model=model,
        choices=choices,
        usage=usage_of(o.done for o in outputs if o.done),
    )


def event_chunk(
    completion_id: str,
    model: str,
    created: int,
    event: ChoiceEvent,
    *,
    reasoning: ReasoningFormat,
    logprobs: bool,
) -> ChatCompletionChunk:
    """The chunk carrying a choice's new text, calls and logprobs (finish goes separately)."""
    calls = [
        ToolCallDelta(
            index=event.first_call + k,
            id=call.id,
            type="function",
            function=FunctionCallOut(name=call.name, arguments=call.arguments),
        )
        for k, call in enumerate(event.tool_calls)
    ]
    delta = DeltaMessage(
        content=event.content or None,
        tool_calls=calls or None,
        **_reasoning_fields(reasoning, event.reasoning),
    )
    choice = ChunkChoice(
        index=event.index,
        delta=delta,
        logprobs=ChoiceLogprobs(content=logprobs_out(event.logprobs)) if logprobs else None,
    )
    return ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[choice])


def chunk(
    completion_id: str,
    model: str,
    created: int,
    *,
    index: int = 0,
    role: bool = False,
    content: str | None = None,
    finish_reason: str | None = None,
) -> ChatCompletionChunk:
    delta = DeltaMessage(role="assistant" if role else None, content=content)
    return ChatCompletionChunk(
        id=completion_id,
        created=created,
        model=model,
        choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish_reason)],
    )


def usage_chunk(
    completion_id: str, model: str, created: int, dones: Iterable[Done]
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=completion_id, created=created, model=model, choices=[], usage=usage_of(dones)
    )


def error_body(error: ApplianceError) -> dict[str, object]:
    """The OpenAI error envelope: `{"error": {"message", "type", "code", "param"}}`."""
    error_type = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(error.http_status, "server_error")
    return {
        "error": {"message": error.message, "type": error_type, "code": error.code, "param": None}
    }


def sse(payload: BaseModel | dict[str, object]) -> str:
    data = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


SSE_DONE = "data: [DONE]\n\n"
