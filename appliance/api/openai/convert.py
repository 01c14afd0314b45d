"""Engine results → OpenAI wire JSON (one function per shape), and errors → the OpenAI envelope."""

from __future__ import annotations

import json

from appliance.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    DeltaMessage,
    ResponseMessage,
    Usage,
)
from appliance.engine.messages import Done
from appliance.errors import ApplianceError


def usage_of(done: Done) -> Usage:
    return Usage(
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        total_tokens=done.prompt_tokens + done.completion_tokens,
    )


def completion(completion_id: str, model: str, text: str, done: Done) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        model=model,
        choices=[Choice(message=ResponseMessage(content=text), finish_reason=done.finish_reason)],
        usage=usage_of(done),
    )


def chunk(
    completion_id: str,
    model: str,
    created: int,
    *,
    role: bool = False,
    content: str | None = None,
    finish_reason: str | None = None,
) -> ChatCompletionChunk:
    delta = DeltaMessage(role="assistant" if role else None, content=content)
    return ChatCompletionChunk(
        id=completion_id,
        created=created,
        model=model,
        choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
    )


def usage_chunk(completion_id: str, model: str, created: int, done: Done) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=completion_id, created=created, model=model, choices=[], usage=usage_of(done)
    )


def error_body(error: ApplianceError) -> dict[str, object]:
    """The OpenAI error envelope: `{"error": {"message", "type", "code", "param"}}`."""
    error_type = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(error.http_status, "server_error")
    return {
        "error": {"message": error.message, "type": error_type, "code": error.code, "param": None}
    }


def sse(payload: ChatCompletionChunk | dict[str, object]) -> str:
    data = payload if isinstance(payload, dict) else payload.model_dump(exclude_none=False)
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


SSE_DONE = "data: [DONE]\n\n"
