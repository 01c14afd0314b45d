"""`POST /v1/completions`: OpenAI's legacy text completions (raw prompt, no chat template).

Its request/response models live here too: the surface is small and used by few clients
(code completion plugins, benchmarks). No reasoning split and no tool calls: text is text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from appliance.api.deps import ServicesDep
from appliance.api.openai import convert
from appliance.api.openai.limits import check_sampling, over_limit
from appliance.api.openai.protocol import Usage
from appliance.api.openai.sampling import SamplingRequest
from appliance.api.openai.serving import (
    admit_key,
    admit_slots,
    engine_for,
    engine_messages,
    resolve_model,
)
from appliance.engine.client import new_request_id
from appliance.engine.messages import Done, Submit, TokenLogprob
from appliance.errors import ApplianceError, UsageError

router = APIRouter()

MAX_LEGACY_LOGPROBS = 5


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LEGACY_LOGPROBS)
    echo: bool = False
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send one prompt per request (a string, or a list of one)")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_engine_request(self, request_id: str, default_max: int) -> Submit:
        if self.echo or self.suffix:
            raise UsageError("echo and suffix are not supported by this server")
        return Submit(
            id=request_id,
            prompt=self.prompt_text(),
            max_tokens=self.max_tokens or default_max,
            logprobs=self.logprobs is not None,
            top_logprobs=self.logprobs or 0,
            **self.sampling_fields(),
        )


class LegacyLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class TextChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: str | None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


def legacy_logprobs(items: list[TokenLogprob], offset: int) -> LegacyLogprobs:
    """OpenAI's old parallel-lists shape; `offset` is where the first token's text starts."""
    out = LegacyLogprobs()
    for item in items:
        out.tokens.append(item.token)
        out.token_logprobs.append(item.logprob)
        out.top_logprobs.append({top.token: top.logprob for top in item.top})
        out.text_offset.append(offset)
        offset += len(item.token)
    return out


@router.post("/completions", operation_id="create_completion", response_model=None)
async def create_completion(
    body: CompletionRequest, services: ServicesDep
) -> JSONResponse | StreamingResponse:
    limits = services.config.limits
    check_sampling(body, limits)
    if body.logprobs is not None and body.logprobs > limits.max_top_logprobs:
        raise over_limit("logprobs", body.logprobs, limits.max_top_logprobs, "max_top_logprobs")
    info = resolve_model(services, body.model)
    submit = body.to_engine_request(new_request_id(), services.config.engine.max_tokens)
    # Load (or wait for the load) and admit before answering: errors get real HTTP statuses.
    admit_key(services, info)
    await engine_for(services, info).ensure_ready(info)
    admit_slots(services, info, submit.n)  # 429 now, not inside a 200 stream
    completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
    messages = engine_messages(services, info, submit)
    if body.stream:
        stream = _stream(messages, completion_id, info.name, submit, body.include_usage)
        return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)
    texts: dict[int, list[str]] = {i: [] for i in range(submit.n)}
    logprobs: dict[int, list[TokenLogprob]] = {i: [] for i in range(submit.n)}
    dones: dict[int, Done] = {}
    async with aclosing(messages):
        async for message in messages:
            if isinstance(message, Done):
                dones[message.index] = message
            else:
                texts[message.index].append(message.text)
                logprobs[message.index] += message.logprobs or []
    choices = [
        TextChoice(
            index=i,
            text="".join(texts[i]),
            logprobs=legacy_logprobs(logprobs[i], 0) if submit.logprobs else None,
            finish_reason=dones[i].finish_reason,
        )
        for i in range(submit.n)
    ]
    answer = TextCompletion(
        id=completion_id, model=info.name, choices=choices, usage=convert.usage_of(dones.values())
    )
    return JSONResponse(answer.model_dump(mode="json"))


class TextPieces:
    """The SSE event of one piece of text without logprobs, written without building models.

    Such events are nearly all of a stream, one per token; building each from the models took
    tens of microseconds of the daemon's CPU, on a box whose cores the decode needs (chat
    streams do the same in `convert.TextChunks`). Only the text changes within a stream; the
    bytes are those the models give (a test holds this).
    """

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        self._head = convert.event_head("text_completion", completion_id, model, created)

    def event(self, index: int, text: str) -> str:
        return (
            f'{self._head}{index},"text":{convert.json_text(text)},"logprobs":null,'
            '"finish_reason":null}],"usage":null}\n\n'
        )


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _stream(
    messages: AsyncIterator[Any], completion_id: str, model: str, submit: Submit, usage: bool
) -> AsyncIterator[str]:
    created = int(time.time())
    offsets = dict.fromkeys(range(submit.n), 0)
    dones: list[Done] = []

    def event(choice: TextChoice) -> str:
        item = TextCompletion(id=completion_id, created=created, model=model, choices=[choice])
        return convert.sse(item)

    pieces = TextPieces(completion_id, model, created)

    try:
        async for message in messages:
            if isinstance(message, Done):
                dones.append(message)
                choice = TextChoice(
                    index=message.index, text="", finish_reason=message.finish_reason
                )
                yield event(choice)
                continue
            if not submit.logprobs:
                yield pieces.event(message.index, message.text)
                continue
            lp = legacy_logprobs(message.logprobs or [], offsets[message.index])
            offsets[message.index] += len(message.text)
            yield event(TextChoice(index=message.index, text=message.text, logprobs=lp))
        if usage:
            summary = TextCompletion(
                id=completion_id, created=created, model=model, choices=[],
                usage=convert.usage_of(dones),
            )  # fmt: skip
            yield convert.sse(summary)
    except ApplianceError as error:
        yield convert.sse(convert.error_body(error))
    yield convert.SSE_DONE
