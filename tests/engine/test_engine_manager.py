"""EngineManager with real workers: hang detection, admission limits, idle unload, eviction."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.engine.manager import EngineManager
from appliance.engine.messages import Done, Submit
from appliance.errors import EngineError, Overloaded
from appliance.records import ModelState
from helpers.engine import PROMPT, model_info
from helpers.runtime import cpu_placer


def manager_with(**engine: object) -> EngineManager:
    config = Config(engine={"context_length": 512, "threads": 1, **engine})
    return EngineManager(config, placer=cpu_placer(config))


async def wait_for_state(manager: EngineManager, name: str, state: ModelState) -> None:
    for _ in range(200):
        current = manager.state_of(name)
        if current is not None and current.state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never became {state}: {manager.state_of(name)}")


async def test_hung_worker_is_killed_and_restarted(embedded_model: Path) -> None:
    manager = manager_with(hang_timeout_s=1.0)
    info = model_info(embedded_model)
    try:
        worker = await manager.ensure_ready(info)
        os.kill(worker.pid, signal.SIGSTOP)  # alive but answering nothing: a hung device call
        await wait_for_state(manager, "smollm2", ModelState.FAILED)
        assert "hung" in manager.state_of("smollm2").error
        await wait_for_state(manager, "smollm2", ModelState.READY)
        assert manager.state_of("smollm2").pid != worker.pid
        assert manager.state_of("smollm2").restarts == 1
    finally:
        await manager.shutdown()


async def test_requests_beyond_slots_and_queue_are_refused_as_overloaded(
    embedded_model: Path,
) -> None:
    manager = manager_with(slots=1, queue_size=1)
    info = model_info(embedded_model)
    try:
        await manager.ensure_ready(info)
        started = asyncio.Event()

        async def consume(request_id: str) -> None:
            endless = {0: -100.0, 2: -100.0}  # no end-of-text: the slot stays busy
            submit = Submit(request_id, PROMPT, max_tokens=300, logit_bias=endless)
            async for _ in manager.generate(info, submit):
                started.set()

        # One request in the slot, one in the queue: the model is full.
        consumers = [asyncio.create_task(consume(f"r{i}")) for i in range(2)]
        await asyncio.wait_for(started.wait(), 30)
        await asyncio.sleep(0.1)  # let the second request be submitted too
        with pytest.raises(Overloaded) as caught:
            await anext(manager.generate(info, Submit("r2", PROMPT, max_tokens=2)))
        assert caught.value.retry_after_s > 0
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        # Once the others are gone, the model accepts work again.
        pieces = [m async for m in manager.generate(info, Submit("r3", PROMPT, max_tokens=2))]
        assert isinstance(pieces[-1], Done)
    finally:
        await manager.shutdown()


async def test_idle_model_is_unloaded_but_a_pinned_one_stays(embedded_model: Path) -> None:
    manager = manager_with(keep_alive_s=0.2, max_loaded=2)
    try:
        await manager.load(model_info(embedded_model, "pinned"), explicit=True)
        await manager.ensure_ready(model_info(embedded_model, "casual"))
        await asyncio.sleep(0.4)
        assert await manager.unload_idle() == ["casual"]
        assert [m.name for m in manager.loaded()] == ["pinned"]
    finally:
        await manager.shutdown()


async def test_loading_another_model_evicts_the_least_recently_used(embedded_model: Path) -> None:
    manager = manager_with(max_loaded=1)
    try:
        await manager.ensure_ready(model_info(embedded_model, "a"))
        await manager.ensure_ready(model_info(embedded_model, "b"))
        assert [m.name for m in manager.loaded()] == ["b"]
    finally:
        await manager.shutdown()


async def test_pinned_model_is_not_evicted_by_a_request_for_another(embedded_model: Path) -> None:
    manager = manager_with(max_loaded=1)
    try:
        await manager.load(model_info(embedded_model, "default"), explicit=True)
        with pytest.raises(EngineError, match="pinned or busy"):
            await manager.ensure_ready(model_info(embedded_model, "other"))
        # The administrator's explicit load may replace it.
        await manager.load(model_info(embedded_model, "other"), explicit=True)
        assert [m.name for m in manager.loaded()] == ["other"]
    finally:
        await manager.shutdown()


async def test_load_reports_progress_and_slots(embedded_model: Path) -> None:
    manager = manager_with(slots=3)
    try:
        record = await manager.load(model_info(embedded_model), explicit=True)
        assert record.load_progress == 1.0
        assert record.slots == 3
        assert record.pinned
    finally:
        await manager.shutdown()
