"""The worker process boundary: real workers, the real model, real crashes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.engine.client import WorkerProcess
from appliance.engine.manager import EngineManager
from appliance.engine.messages import Delta, Done, Submit
from appliance.errors import EngineDead, EngineError
from appliance.records import ModelState
from helpers.engine import PROMPT, model_info
from helpers.runtime import cpu_placer, load_message


async def test_worker_loads_the_model_in_its_own_process(embedded_model: Path) -> None:
    worker = WorkerProcess("smollm2")
    ready = await worker.start(load_message(str(embedded_model), 1024, 2), timeout_s=60)
    try:
        assert ready.context_length == 1024
        assert worker.pid != os.getpid()
        pieces = [m async for m in worker.generate(Submit("r1", PROMPT, max_tokens=4))]
        assert isinstance(pieces[-1], Done) and pieces[-1].finish_reason == "length"
        assert sum(isinstance(p, Delta) for p in pieces) == 4
    finally:
        await worker.stop()
    assert worker.process is not None and worker.process.returncode == 0


async def test_corrupt_model_file_fails_the_load_with_a_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    worker = WorkerProcess("broken")
    with pytest.raises(EngineError, match="could not load 'broken'"):
        await worker.start(load_message(str(broken), 512, 1), timeout_s=60)
    assert not worker.alive


async def test_killed_worker_ends_the_stream_with_engine_dead(embedded_model: Path) -> None:
    worker = WorkerProcess("smollm2")
    await worker.start(load_message(str(embedded_model), 1024, 2), timeout_s=60)
    received = 0
    with pytest.raises(EngineDead) as caught:
        async for _message in worker.generate(Submit("r1", PROMPT, max_tokens=500)):
            received += 1
            if received == 3:
                os.kill(worker.pid, signal.SIGKILL)
    assert "SIGKILL" in caught.value.message
    assert "smollm2" in caught.value.message


async def test_abandoned_stream_is_cancelled_and_the_worker_serves_the_next(
    embedded_model: Path,
) -> None:
    worker = WorkerProcess("smollm2")
    await worker.start(load_message(str(embedded_model), 1024, 2), timeout_s=60)
    try:
        stream = worker.generate(Submit("long", PROMPT, max_tokens=2000))
        async for _ in stream:
            break
        await stream.aclose()  # what the API does when the HTTP client goes away
        started = asyncio.get_running_loop().time()
        pieces = [m async for m in worker.generate(Submit("next", PROMPT, max_tokens=2))]
        assert isinstance(pieces[-1], Done)
        # Had the 2000-token request run on, this one would have waited behind it for minutes.
        assert asyncio.get_running_loop().time() - started < 30
    finally:
        await worker.stop()


async def test_manager_marks_a_dead_worker_failed_and_restarts_it(
    embedded_model: Path,
) -> None:
    config = Config(engine={"context_length": 1024, "threads": 2})
    manager = EngineManager(config, placer=cpu_placer(config))
    info = model_info(embedded_model)
    try:
        first = await manager.ensure_ready(info)
        os.kill(first.pid, signal.SIGKILL)
        for _ in range(50):
            await asyncio.sleep(0.05)
            if manager.state_of("smollm2").state == ModelState.FAILED:
                break
        state = manager.state_of("smollm2")
        assert state.state == ModelState.FAILED
        assert "SIGKILL" in state.error
        assert "restarting" in state.error
        pieces = [m async for m in manager.generate(info, Submit("again", PROMPT, max_tokens=2))]
        assert isinstance(pieces[-1], Done)
        restarted = manager.state_of("smollm2")
        assert restarted.pid not in (None, first.pid)
        assert restarted.restarts == 1
    finally:
        await manager.shutdown()
