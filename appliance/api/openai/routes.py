"""OpenAI-compatible routes on the LAN listener: `/v1/chat/completions`, `/v1/models`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from appliance.api.chat_template import render_chat
from appliance.api.deps import ApiKeyDep, ServicesDep
from appliance.api.openai import convert
from appliance.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
)
from appliance.engine.client import new_request_id
from appliance.engine.messages import Done, Submit
from appliance.errors import ApplianceError, ModelNotFound
from appliance.records import ModelInfo
from appliance.services import Services

log = logging.getLogger("appliance.api")

router = APIRouter(prefix="/v1", dependencies=[ApiKeyDep], tags=["openai"])


def resolve_model(services: Services, requested: str) -> ModelInfo:
    """The installed model a request names (`default` or empty: the default model)."""
    name = requested.strip()
    if name in ("", "default") and services.default_model:
        name = services.default_model
    installed = services.store.list()
    for info in installed:
        if info.name == name:
            return info
    available = ", ".join(info.name for info in installed) or "none installed"
    raise ModelNotFound(
        f"model {requested!r} is not installed on this appliance; available: {available}"
    )


@router.get("/models", operation_id="list_models")
async def list_models(services: ServicesDep) -> ModelList:
    return ModelList(
        data=[ModelCard(id=m.name, created=int(m.imported_at)) for m in services.store.list()]
    )


@router.post("/chat/completions", operation_id="create_chat_completion", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, services: ServicesDep
) -> ChatCompletion | StreamingResponse:
    if body.model_extra:
        log.debug("ignoring unsupported request fields: %s", ", ".join(sorted(body.model_extra)))
    info = resolve_model(services, body.model)
    prompt = render_chat(
        info.chat_template,
        body.template_messages(),
        bos_token=info.bos_token,
        eos_token=info.eos_token,
    )
    submit = body.to_engine_request(new_request_id(), prompt, services.config.engine.max_tokens)
    # Load (or wait for the load) before answering, so load failures get a real HTTP status.
    await services.engine.ensure_ready(info)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _stream(services, info, submit, completion_id, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    pieces: list[str] = []
    async for message in services.engine.generate(info, submit):
        if isinstance(message, Done):
            return convert.completion(completion_id, info.name, "".join(pieces), message)
        pieces.append(message.text)
    raise AssertionError("engine stream ended without Done")  # pragma: no cover


async def _stream(
    services: Services, info: ModelInfo, submit: Submit, completion_id: str, include_usage: bool
) -> AsyncIterator[str]:
    created = int(time.time())
    yield convert.sse(convert.chunk(completion_id, info.name, created, role=True, content=""))
    try:
        async for message in services.engine.generate(info, submit):
            if isinstance(message, Done):
                yield convert.sse(
                    convert.chunk(
                        completion_id, info.name, created, finish_reason=message.finish_reason
                    )
                )
                if include_usage:
                    yield convert.sse(
                        convert.usage_chunk(completion_id, info.name, created, message)
                    )
            elif message.text:
                yield convert.sse(
                    convert.chunk(completion_id, info.name, created, content=message.text)
                )
    except ApplianceError as error:
        # Headers are gone already: the error travels as an SSE event, as OpenAI's API does.
        log.warning("stream %s failed: %s", completion_id, error.message)
        yield convert.sse(convert.error_body(error))
    yield convert.SSE_DONE
