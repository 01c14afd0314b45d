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
from appliance.errors import EngineDead, EngineError, NoRoom, Overloaded
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


async def test_a_lost_device_stops_its_worker_and_ends_its_streams(embedded_model: Path) -> None:
    manager = manager_with(slots=1)
    info = model_info(embedded_model)
    try:
        worker = await manager.ensure_ready(info)
        assert manager.state_of("smollm2").device_id == "cpu0"
        endless = {0: -100.0, 2: -100.0}  # no end-of-text: the stream is still running
        stream = manager.generate(info, Submit("lost", PROMPT, max_tokens=500, logit_bias=endless))
        await anext(stream)

        assert manager.fail_models_on_device("cpu0", "it fell off the bus") == ["smollm2"]

        with pytest.raises(EngineDead, match="device cpu0 was lost: it fell off the bus"):
            async for _ in stream:
                pass
        assert worker.process is not None
        await asyncio.wait_for(worker.process.wait(), 10)  # the worker is gone, not lingering
        state = manager.state_of("smollm2")
        assert (state.state, state.pid) == (ModelState.FAILED, None)
        assert "device cpu0 was lost" in state.error
    finally:
        await manager.shutdown()


async def test_concurrent_loads_of_different_models_respect_max_loaded(
    embedded_model: Path,
) -> None:
    manager = manager_with(max_loaded=1)
    names = ["a", "b", "c"]
    try:
        results = await asyncio.gather(
            *(manager.ensure_ready(model_info(embedded_model, n)) for n in names),
            return_exceptions=True,
        )
        served = [n for n, r in zip(names, results, strict=True) if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, Exception)]
        # One load won the only place; the others were told why, as a 503 to retry.
        assert len(served) == 1
        assert all(isinstance(e, NoRoom) and e.http_status == 503 for e in refused), refused
        assert "engine.max_loaded is 1" in refused[0].message
        alive = [m for m in manager.loaded() if m.pid is not None]
        assert [m.name for m in alive] == served
        # Nobody is left "loading" forever: the refused ones say so in their state.
        states = {m.name: m.state for m in manager.loaded()}
        assert set(states.values()) <= {ModelState.READY, ModelState.FAILED}
        # With the first one idle, the next request for another model replaces it.
        other = next(n for n in names if n not in served)
        await manager.ensure_ready(model_info(embedded_model, other))
        assert [m.name for m in manager.loaded() if m.state == ModelState.READY] == [other]
    finally:
        await manager.shutdown()


async def test_an_explicit_load_with_no_room_is_refused_with_503_not_500(
    embedded_model: Path,
) -> None:
    manager = manager_with(max_loaded=1)
    try:
        await manager.load(model_info(embedded_model, "pinned"), explicit=True)
        info = model_info(embedded_model, "busy")
        stream = manager.generate(model_info(embedded_model, "pinned"), Submit("r", PROMPT, 50))
        await anext(stream)  # the pinned model is busy now: an explicit load cannot evict it
        with pytest.raises(NoRoom):
            await manager.load(info, explicit=True)
        await stream.aclose()
    finally:
        await manager.shutdown()


async def test_out_of_memory_the_kernel_picks_a_worker_before_the_daemon(
    embedded_model: Path,
) -> None:
    manager = manager_with()
    try:
        worker = await manager.ensure_ready(model_info(embedded_model))
        worker_score = int(Path(f"/proc/{worker.pid}/oom_score_adj").read_text())
        own_score = int(Path("/proc/self/oom_score_adj").read_text())
        assert worker_score == manager.config.engine.worker_oom_score_adj == 500
        assert worker_score > own_score
    finally:
        await manager.shutdown()
