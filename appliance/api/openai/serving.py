"""What every generating route needs from the daemon: the model a request names, admission
(the key's limits, the slot queue), and engine streams with their accounting.

Shared by the OpenAI routes (chat, text completions, embeddings) and the Ollama routes, so
both protocols admit, queue, meter and audit requests the same way. Kept out of `routes.py`
so those modules can import it without a cycle.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any, Protocol

from appliance.api import accounting
from appliance.engine.messages import Delta, Done, Submit
from appliance.errors import EngineError, ModelNotFound, PermissionDenied, RateLimited
from appliance.records import LoadedModel, ModelFormat, ModelInfo
from appliance.services import Services


class Engine(Protocol):
    """What the routes need from whatever serves a model: the engine manager (local workers)
    or the upstream pool (appliance.upstream)."""

    async def ensure_ready(self, info: ModelInfo, wait: bool = True) -> Any: ...
    def state_of(self, name: str) -> LoadedModel | None: ...
    def admit(self, info: ModelInfo) -> None: ...
    def generate(self, info: ModelInfo, submit: Submit) -> AsyncIterator[Delta | Done]: ...
    async def embed(self, info: ModelInfo, inputs: list[str], normalize: bool) -> Any: ...
    def keep_alive(self, name: str, seconds: float) -> None: ...
    def expires_at(self, name: str) -> float | None: ...


def engine_for(services: Services, info: ModelInfo) -> Engine:
    """The one place a resolved model is mapped to what generates for it."""
    if info.format == ModelFormat.UPSTREAM and services.upstreams is not None:
        return services.upstreams
    return services.engine


def _all_models(services: Services) -> list[ModelInfo]:
    """Installed models, then upstream names (a name is never both: `upstream add` refuses)."""
    upstream = services.upstreams.infos() if services.upstreams is not None else []
    return services.store.list() + upstream


def _allowed_models() -> list[str] | None:
    """The calling key's model allow-list; None: every installed model."""
    usage = accounting.current()
    return usage.limits.allowed_models if usage and usage.limits else None


def visible_models(services: Services) -> list[ModelInfo]:
    """The installed models the calling key may use (listings show only these)."""
    allowed = _allowed_models()
    installed = _all_models(services)
    return installed if allowed is None else [m for m in installed if m.name in allowed]


def resolve_model(services: Services, requested: str) -> ModelInfo:
    """The installed model a request names (`default` or empty: the default model).

    A model outside the calling key's allow-list is refused here, before anything loads it.
    """
    name = requested.strip()
    if name in ("", "default") and services.default_model:
        name = services.default_model
    visible = visible_models(services)
    for info in visible:
        if info.name == name:
            return info
    allowed = _allowed_models()
    if allowed is not None and any(info.name == name for info in _all_models(services)):
        installed = {m.name for m in visible}
        may_use = [m if m in installed else f"{m} (not installed)" for m in allowed]
        raise PermissionDenied(
            f"this API key may not use model {name!r}; it may use: "
            f"{', '.join(may_use) or 'no model'} (the administrator sets this with "
            "`appliance keys limit`)"
        )
    available = ", ".join(info.name for info in visible) or "none installed"
    raise ModelNotFound(
        f"model {requested!r} is not installed on this appliance; available: {available}"
    )


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


def admit_key(services: Services, info: ModelInfo) -> None:
    """Refuse (429) what the calling key's rate limits forbid; call it before any load.

    Requests per minute and tokens per day; the allow-list is `resolve_model`'s job. Runs
    before the model is loaded, so a key over its limits cannot make the box load a model.
    """
    usage = accounting.current()
    if usage is not None:
        usage.model = info.name
    limits = usage.limits if usage else None
    if limits is None:
        return
    if limits.requests_per_minute is not None:
        services.key_rates.admit(usage.key_label, limits.requests_per_minute, time.monotonic())
    if limits.tokens_per_day is not None and usage.key_id is not None:
        now = datetime.now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        used = services.audit.tokens_since(usage.key_id, midnight) if services.audit else 0
        if used >= limits.tokens_per_day:
            raise RateLimited(
                f"limit tokens_per_day reached: this API key has used {used} of its "
                f"{limits.tokens_per_day} tokens today; it resets at midnight",
                retry_after_s=_seconds_to_midnight(now),
                limit="tokens_per_day",
            )


def admit_slots(services: Services, info: ModelInfo, n: int = 1) -> None:
    """Refuse (429, before any stream starts) a request that could not even wait for `n` of
    the loaded model's slots: the queue is full, or the key is at its `max_streams`."""
    usage = accounting.current()
    key = usage.key_label if usage else "-"
    engine = engine_for(services, info)
    state = engine.state_of(info.name)
    if state is not None and state.slots:
        max_streams = usage.limits.max_streams if usage and usage.limits else None
        services.scheduler.check(info.name, key, n, capacity=state.slots, max_streams=max_streams)
    engine.admit(info)


async def engine_messages(
    services: Services, info: ModelInfo, submit: Submit
) -> AsyncIterator[Delta | Done]:
    """The engine's messages for all `submit.n` choices; ends after the last choice's Done.

    Waits for `n` slots in the scheduler (round-robin across keys) first, and meters the
    answer: time to first text, time between pieces, tokens (metrics, audit log).
    """
    usage = accounting.current()
    key = usage.key_label if usage else "-"
    if usage is not None:
        usage.model = info.name
        if services.config.audit.store_prompts:
            usage.prompt = submit.prompt
    engine = engine_for(services, info)
    state = engine.state_of(info.name)
    capacity = state.slots if state and state.slots else submit.n
    metrics = services.metrics
    finished: dict[int, Done] = {}
    started = time.perf_counter()
    last_text: dict[int, float] = {}
    # The model's histograms, looked up once: per token, `labels()` costs as much as observing.
    ttft = metrics.ttft.labels(info.name) if metrics is not None else None
    itl = metrics.itl.labels(info.name) if metrics is not None else None
    # The engine's stream is closed explicitly: its generator does its bookkeeping (in-flight
    # count, cancel) in `finally`, which must not wait for the garbage collector.
    async with (
        services.scheduler.slots(info.name, key, submit.n, capacity=capacity),
        aclosing(engine.generate(info, submit)) as stream,
    ):
        async for message in stream:
            if not 0 <= message.index < submit.n:
                raise EngineError(f"engine answered for choice {message.index} of {submit.n}")
            if isinstance(message, Delta) and message.text and ttft is not None and itl is not None:
                now = time.perf_counter()
                if not last_text:
                    ttft.observe(now - started)
                elif message.index in last_text:
                    itl.observe(now - last_text[message.index])
                last_text[message.index] = now
            yield message
            if isinstance(message, Done):
                finished[message.index] = message
                _account(services, info, message, first=len(finished) == 1)
                if message.last or len(finished) == submit.n:
                    return
    if len(finished) < submit.n:
        raise EngineError(
            f"the engine finished {len(finished)} of {submit.n} choices; the rest were lost"
        )


def _account(services: Services, info: ModelInfo, done: Done, *, first: bool) -> None:
    """Tokens of one finished choice; the shared prompt is counted once per request."""
    prompt = done.prompt_tokens if first else 0
    usage = accounting.current()
    if usage is not None:
        usage.tokens_in += prompt
        usage.tokens_out += done.completion_tokens
    if services.metrics is not None:
        services.metrics.observe_tokens(info.name, prompt, done.completion_tokens)


def account_embedding(services: Services, info: ModelInfo, prompt_tokens: int) -> None:
    usage = accounting.current()
    if usage is not None:
        usage.model = info.name
        usage.tokens_in += prompt_tokens
    if services.metrics is not None:
        services.metrics.observe_tokens(info.name, prompt_tokens, 0)
