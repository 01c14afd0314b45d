"""What every OpenAI route needs from the daemon: the model a request names, engine streams.

Shared by the chat, text-completion and embeddings routes (kept out of `routes.py` so those
modules can import it without a cycle).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from appliance.engine.messages import Delta, Done, Submit
from appliance.errors import EngineError, ModelNotFound
from appliance.records import ModelInfo
from appliance.services import Services


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


async def engine_messages(
    services: Services, info: ModelInfo, submit: Submit
) -> AsyncIterator[Delta | Done]:
    """The engine's messages for all `submit.n` choices; ends after the last choice's Done."""
    finished: set[int] = set()
    # Closed explicitly: the engine's generator does its bookkeeping (in-flight count, cancel)
    # in `finally`, which must not wait for the garbage collector when we stop early.
    async with aclosing(services.engine.generate(info, submit)) as stream:
        async for message in stream:
            if not 0 <= message.index < submit.n:
                raise EngineError(f"engine answered for choice {message.index} of {submit.n}")
            yield message
            if isinstance(message, Done):
                finished.add(message.index)
                if message.last or len(finished) == submit.n:
                    return
    if len(finished) < submit.n:
        raise EngineError(
            f"the engine finished {len(finished)} of {submit.n} choices; the rest were lost"
        )
