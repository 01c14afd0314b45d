"""Ollama-compatible routes: `/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`,
`/api/tags`, `/api/ps`, `/api/show`, and `/api/version` (plus `GET /`, which Ollama's CLI probes).

Same API keys (`Authorization: Bearer`), same engine path and the same prompt building as
`/v1`; only the wire shapes differ (`convert.py`). Streams are NDJSON, one object per line,
and Ollama streams unless `"stream": false`. Errors are `{"error": "..."}` (`api/app.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.routing import APIRoute

from appliance import __version__
from appliance.api.deps import ApiKeyDep, Caller, CallerDep, ServicesDep
from appliance.api.ollama import convert
from appliance.api.ollama.convert import Timings
from appliance.api.ollama.protocol import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    ShowRequest,
    parse_keep_alive,
)
from appliance.api.openai import limits
from appliance.api.openai.chat_prompt import ToolMode, build_prompt
from appliance.api.openai.choices import ChoiceOutput
from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.api.openai.reasoning import ReasoningFormat
from appliance.api.openai.serving import (
    account_embedding,
    admit_key,
    admit_slots,
    engine_for,
    engine_messages,
    resolve_model,
    visible_models,
)
from appliance.engine.client import new_request_id
from appliance.engine.messages import Done, Submit
from appliance.errors import ApplianceError, ModelNotFound
from appliance.records import ModelInfo
from appliance.services import Services

log = logging.getLogger("appliance.api")


class _AnyBodyIsJson(APIRoute):
    """Reads every body as JSON, whatever its Content-Type.

    Ollama's server does, and its documentation's examples are `curl URL -d '{...}'`, which
    sends `application/x-www-form-urlencoded`; FastAPI would refuse those bodies.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
            return await handler(request)

        return handle


public = APIRouter(tags=["ollama"])
"""Routes without a key: they tell only that the server runs and which API it speaks."""
router = APIRouter(
    prefix="/api", dependencies=[ApiKeyDep], tags=["ollama"], route_class=_AnyBodyIsJson
)

NDJSON = "application/x-ndjson"


@public.get("/", operation_id="ollama_root", response_class=PlainTextResponse)
@public.head("/", operation_id="ollama_root_head", response_class=PlainTextResponse)
async def root() -> str:
    return "Ollama is running"


@public.get("/api/version", operation_id="ollama_version")
async def version() -> dict[str, str]:
    return {"version": convert.OLLAMA_API_VERSION, "appliance": __version__}


def resolve(services: Services, requested: str) -> ModelInfo:
    """The model an Ollama client names; `name:latest` is `name` (Ollama's default tag)."""
    name = requested.strip().removesuffix(":latest")
    try:
        return resolve_model(services, name)
    except ModelNotFound:
        installed = ", ".join(info.name for info in visible_models(services)) or "none installed"
        raise ModelNotFound(
            f'model "{requested}" not found on this appliance; installed: {installed}'
        ) from None


def _log_ignored(body: Any) -> None:
    if body.model_extra:
        log.debug("ignoring unsupported request fields: %s", ", ".join(sorted(body.model_extra)))


@router.get("/tags", operation_id="ollama_tags")
async def tags(services: ServicesDep) -> dict[str, Any]:
    return {"models": [convert.tag(info) for info in visible_models(services)]}


@router.get("/ps", operation_id="ollama_ps")
async def ps(services: ServicesDep) -> dict[str, Any]:
    installed = {info.name: info for info in visible_models(services)}
    models = []
    for loaded in services.engine.loaded():
        info = installed.get(loaded.name)
        if info is not None and loaded.state == "ready":
            models.append(convert.running(info, loaded, services.engine.expires_at(info.name)))
    return {"models": models}


@router.post("/show", operation_id="ollama_show")
async def show(body: ShowRequest, services: ServicesDep) -> dict[str, Any]:
    info = resolve(services, body.model_name())
    return convert.show(info, engine_for(services, info).state_of(info.name))


@router.post("/embed", operation_id="ollama_embed")
async def embed(body: EmbedRequest, services: ServicesDep) -> dict[str, Any]:
    _log_ignored(body)
    info = resolve(services, body.model)
    timings = Timings()
    admit_key(services, info)
    engine = engine_for(services, info)
    await engine.ensure_ready(info)
    timings.mark_loaded()
    _keep_alive(services, info, body.keep_alive)
    result = await engine.embed(info, body.texts(), normalize=True)
    account_embedding(services, info, result.prompt_tokens)
    stats = timings.fields(None)
    return {"model": body.model, "embeddings": result.vectors, **stats,
            "prompt_eval_count": result.prompt_tokens}  # fmt: skip


@router.post("/embeddings", operation_id="ollama_embeddings")
async def embeddings(body: EmbeddingsRequest, services: ServicesDep) -> dict[str, Any]:
    info = resolve(services, body.model)
    admit_key(services, info)
    _keep_alive(services, info, body.keep_alive)
    result = await engine_for(services, info).embed(info, [body.prompt], normalize=True)
    account_embedding(services, info, result.prompt_tokens)
    return {"embedding": result.vectors[0]}


def _keep_alive(services: Services, info: ModelInfo, value: float | str | None) -> None:
    seconds = parse_keep_alive(value)
    if seconds is not None:
        engine_for(services, info).keep_alive(info.name, seconds)


async def _load_or_unload(
    services: Services, info: ModelInfo, body: ChatRequest | GenerateRequest, *, chat: bool
) -> JSONResponse:
    """An empty prompt loads the model (or, with keep_alive 0, unloads it), as in Ollama."""
    seconds = body.keep_alive_s()
    engine = engine_for(services, info)
    state = engine.state_of(info.name)
    if seconds == 0 and engine is services.engine and not (state and state.pinned):
        await services.engine.unload(info.name)
        reason = "unload"
    else:
        await engine.ensure_ready(info)
        _keep_alive(services, info, body.keep_alive)
        reason = "load"
    answer: dict[str, Any] = {"model": body.model, "created_at": convert.timestamp()}
    if chat:
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        answer["response"] = ""
    return JSONResponse({**answer, "done": True, "done_reason": reason})


@router.post("/chat", operation_id="ollama_chat", response_model=None)
async def chat(
    body: ChatRequest, services: ServicesDep, caller: CallerDep
) -> JSONResponse | StreamingResponse:
    _log_ignored(body)
    info = resolve(services, body.model)
    if not body.messages:
        return await _load_or_unload(services, info, body, chat=True)
    return await _serve(services, caller, info, body, convert.chat_request(body), chat=True)


@router.post("/generate", operation_id="ollama_generate", response_model=None)
async def generate(
    body: GenerateRequest, services: ServicesDep, caller: CallerDep
) -> JSONResponse | StreamingResponse:
    _log_ignored(body)
    info = resolve(services, body.model)
    if not body.prompt and not body.system:
        return await _load_or_unload(services, info, body, chat=False)
    return await _serve(services, caller, info, body, convert.generate_request(body), chat=False)


async def _serve(
    services: Services,
    caller: Caller,
    info: ModelInfo,
    body: ChatRequest | GenerateRequest,
    request: ChatCompletionRequest,
    *,
    chat: bool,
) -> JSONResponse | StreamingResponse:
    # The same request bounds as /v1 (config.limits): one gate for every dialect.
    limits.check_chat(request, services.config.limits)
    timings = Timings()
    raw = isinstance(body, GenerateRequest) and body.raw
    if raw:
        assert isinstance(body, GenerateRequest)
        text, opens, mode, schema, upstream = body.prompt, False, ToolMode.OFF, None, None
    else:
        prompt = build_prompt(request, info)
        text, opens, mode = prompt.text, prompt.opens_thinking, prompt.tool_mode
        schema, upstream = prompt.forced_schema, prompt.upstream_body
    submit = request.to_engine_request(
        new_request_id(), text, services.config.engine.max_tokens,
        prompt_opens_thinking=opens, json_schema=schema, upstream_body=upstream,
    )  # fmt: skip
    fmt = convert.reasoning_format(body.think, caller.reasoning_format)
    output = ChoiceOutput(0, reasoning=fmt, thinking_opened=opens, tools=mode)
    admit_key(services, info)  # before the load: a key over its limits loads nothing
    await engine_for(services, info).ensure_ready(info)
    timings.mark_loaded()
    admit_slots(services, info)  # 429 now, not inside a 200 stream
    _keep_alive(services, info, body.keep_alive)
    job = _Job(services, info, submit, output, fmt, timings, body.model, chat, body.logprobs)
    if body.stream:
        return StreamingResponse(job.lines(), media_type=NDJSON)
    return JSONResponse(await job.whole())


class _Job:
    """One chat or generate request on its way through the engine, streamed or not."""

    def __init__(
        self,
        services: Services,
        info: ModelInfo,
        submit: Submit,
        output: ChoiceOutput,
        fmt: ReasoningFormat,
        timings: Timings,
        model: str,
        chat: bool,
        logprobs: bool,
    ) -> None:
        self.services, self.info, self.submit, self.output = services, info, submit, output
        self.fmt, self.timings, self.model, self.chat = fmt, timings, model, chat
        self.logprobs = logprobs

    def _chunk(self, event: Any) -> dict[str, Any]:
        build = convert.chat_chunk if self.chat else convert.generate_chunk
        return build(self.model, event, self.fmt, logprobs=self.logprobs)

    def _final(self, done: Done | None, reason: str, last: dict[str, Any] | None) -> dict:
        base = last or self._chunk(convert.ChoiceEvent(0))
        return {**base, **convert.final_fields(done, reason, self.timings)}

    async def lines(self) -> AsyncIterator[str]:
        try:
            async with aclosing(engine_messages(self.services, self.info, self.submit)) as stream:
                async for message in stream:
                    self.timings.mark_token()
                    if isinstance(message, Done):
                        event = self.output.finish(message)
                        yield convert.ndjson(
                            self._final(message, message.finish_reason, self._chunk(event))
                        )
                        return
                    event = self.output.feed(message)
                    if event.visible or (self.logprobs and event.logprobs):
                        yield convert.ndjson(self._chunk(event))
        except ApplianceError as error:
            # The status line is gone already: Ollama's clients read an `error` line.
            log.warning("ollama stream for %s failed: %s", self.model, error.message)
            yield convert.ndjson(convert.error_body(error))

    async def whole(self) -> dict[str, Any]:
        done: Done | None = None
        async with aclosing(engine_messages(self.services, self.info, self.submit)) as stream:
            async for message in stream:
                self.timings.mark_token()
                if isinstance(message, Done):
                    done = message
                    self.output.finish(message)
                else:
                    self.output.feed(message)
        out = self.output
        event = convert.ChoiceEvent(0, out.reasoning, out.content, out.tool_calls,
                                    logprobs=out.logprobs)  # fmt: skip
        return self._final(done, done.finish_reason if done else "stop", self._chunk(event))
