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
    FunctionCallDelta,
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
    """The chunk carrying a choice's new text, calls and logprobs (finish goes separately).

    Tool calls stream as OpenAI's do: a delta with id, type and name when a call starts,
    then deltas with pieces of its arguments (`index` says which call they continue).
    """
    calls = [
        ToolCallDelta(
            index=delta.index,
            id=delta.id,
            type="function" if delta.id else None,
            function=FunctionCallDelta(name=delta.name, arguments=delta.arguments),
        )
        for delta in event.call_deltas
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


class TextChunks:
    """The SSE events of one stream's plain pieces of text, written without building models.

    Nearly every event of a stream is one token's text (or reasoning) for one choice. Building
    it from the models (`event_chunk`, then `sse`) took ~40 µs, a tenth of the daemon's work per
    token, on a CPU the model's decode needs. The head of the event is the same for the whole
    stream, so only the text is encoded; the bytes are those the models give (a test holds
    this). Anything more than plain text goes through the models.
    """

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        self._head = event_head("chat.completion.chunk", completion_id, model, created)

    def event(self, event: ChoiceEvent, reasoning: ReasoningFormat, logprobs: bool) -> str | None:
        """The event's SSE text, or None when it is more than one plain piece of text."""
        if logprobs or event.call_deltas or (event.content and event.reasoning):
            return None
        if event.content:
            name, text = "content", event.content
        elif event.reasoning and reasoning.field:
            name, text = reasoning.field, event.reasoning
        else:
            return None
        return (
            f'{self._head}{event.index},"delta":{{"{name}":{json_text(text)}}},'
            '"finish_reason":null,"logprobs":null}],"usage":null}\n\n'
        )


def event_head(kind: str, completion_id: str, model: str, created: int) -> str:
    """The start of a stream event up to its first choice's index, the same for the whole
    stream: the fast paths that write plain text events (`TextChunks`, and the legacy
    completions' `TextPieces`) add only the index and the text."""
    return (
        f'data: {{"id":{json_text(completion_id)},"object":"{kind}",'
        f'"created":{created},"model":{json_text(model)},"choices":[{{"index":'
    )


def json_text(value: object) -> str:
    """Compact JSON, as the models' `model_dump` + sse writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
    return f"data: {json_text(data)}\n\n"


SSE_DONE = "data: [DONE]\n\n"
