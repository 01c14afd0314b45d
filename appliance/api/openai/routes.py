"""OpenAI-compatible routes on the LAN listener: `/v1/chat/completions`, `/v1/models[/{id}]`.

Also mounts `/v1/completions` (completions.py) and `/v1/embeddings` (embeddings.py) on the
same router, so all of `/v1` shares one API-key dependency.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from appliance.api.deps import ApiKeyDep, CallerDep, ServicesDep
from appliance.api.openai import completions, convert, embeddings, limits
from appliance.api.openai.chat_prompt import build_prompt
from appliance.api.openai.choices import ChoiceOutput
from appliance.api.openai.protocol import ChatCompletionRequest, ModelCard, ModelList
from appliance.api.openai.reasoning import ReasoningFormat, parse_format
from appliance.api.openai.serving import (
    admit_key,
    admit_slots,
    engine_for,
    engine_messages,
    resolve_model,
    visible_models,
)
from appliance.engine.client import new_request_id
from appliance.engine.messages import Done, Submit
from appliance.errors import ApplianceError
from appliance.records import ModelInfo
from appliance.services import Services

log = logging.getLogger("appliance.api")

router = APIRouter(prefix="/v1", dependencies=[ApiKeyDep], tags=["openai"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/models", operation_id="list_models")
async def list_models(services: ServicesDep) -> ModelList:
    return ModelList(
        data=[ModelCard(id=m.name, created=int(m.imported_at)) for m in visible_models(services)]
    )


@router.get("/models/{model_id:path}", operation_id="retrieve_model")
async def retrieve_model(model_id: str, services: ServicesDep) -> ModelCard:
    info = resolve_model(services, model_id)
    return ModelCard(id=info.name, created=int(info.imported_at))


@router.post("/chat/completions", operation_id="create_chat_completion", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, services: ServicesDep, caller: CallerDep
) -> JSONResponse | StreamingResponse:
    if body.model_extra:
        log.debug("ignoring unsupported request fields: %s", ", ".join(sorted(body.model_extra)))
    limits.check_chat(body, services.config.limits)
    info = resolve_model(services, body.model)
    prompt = build_prompt(body, info)
    submit = body.to_engine_request(
        new_request_id(),
        prompt.text,
        services.config.engine.max_tokens,
        prompt_opens_thinking=prompt.opens_thinking,
        json_schema=prompt.forced_schema,
        upstream_body=prompt.upstream_body,
    )
    # The request's own choice, else the key's, else the box's default.
    default_format = caller.reasoning_format or services.config.api.reasoning_format
    fmt = body.reasoning(parse_format(default_format))
    outputs = [
        ChoiceOutput(
            index, reasoning=fmt, thinking_opened=prompt.opens_thinking, tools=prompt.tool_mode
        )
        for index in range(body.n)
    ]
    # Load (or wait for the load) before answering, so load failures get a real HTTP status.
    admit_key(services, info)  # before the load: a key over its limits loads nothing
    await engine_for(services, info).ensure_ready(info)
    admit_slots(services, info, body.n)  # 429 now, not inside a 200 stream
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if body.stream:
        stream = _stream(
            services, info, submit, outputs, completion_id, fmt, include_usage=body.include_usage
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    async with aclosing(engine_messages(services, info, submit)) as messages:
        async for message in messages:
            output = outputs[message.index]
            if isinstance(message, Done):
                output.finish(message)
            else:
                output.feed(message)
    answer = convert.completion(
        completion_id, info.name, outputs, reasoning=fmt, logprobs=submit.logprobs
    )
    return JSONResponse(answer.model_dump(mode="json"))


async def _stream(
    services: Services,
    info: ModelInfo,
    submit: Submit,
    outputs: list[ChoiceOutput],
    completion_id: str,
    fmt: ReasoningFormat,
    *,
    include_usage: bool,
) -> AsyncIterator[str]:
    created = int(time.time())
    for output in outputs:
        yield convert.sse(
            convert.chunk(completion_id, info.name, created, index=output.index, role=True,
                          content="")
        )  # fmt: skip
    dones: list[Done] = []
    texts = convert.TextChunks(completion_id, info.name, created)
    try:
        async for message in engine_messages(services, info, submit):
            output = outputs[message.index]
            if isinstance(message, Done):
                event = output.finish(message)
                dones.append(message)
            else:
                event = output.feed(message)
            if event.visible or event.logprobs:
                yield texts.event(event, fmt, submit.logprobs) or convert.sse(
                    convert.event_chunk(completion_id, info.name, created, event,
                                        reasoning=fmt, logprobs=submit.logprobs)
                )  # fmt: skip
            if event.finish_reason is not None:
                yield convert.sse(
                    convert.chunk(completion_id, info.name, created, index=output.index,
                                  finish_reason=event.finish_reason)
                )  # fmt: skip
        if include_usage:
            yield convert.sse(convert.usage_chunk(completion_id, info.name, created, dones))
    except ApplianceError as error:
        # Headers are gone already: the error travels as an SSE event, as OpenAI's API does.
        log.warning("stream %s failed: %s", completion_id, error.message)
        yield convert.sse(convert.error_body(error))
    yield convert.SSE_DONE


router.include_router(completions.router)
router.include_router(embeddings.router)
