"""The worker process boundary: real workers, the real model, real crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.engine.client import WorkerProcess
from appliance.engine.manager import EngineManager
from appliance.engine.messages import MAX_FRAME_BYTES, Delta, Done, Submit
from appliance.errors import EngineDead, EngineError, RequestTooLarge, UsageError
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


async def test_a_fast_stream_arrives_in_groups_with_the_same_answer(embedded_model: Path) -> None:
    """`engine.stream_interval_ms`: the tokens of a fast answer leave the worker a few to a
    message (its first alone, for the time to first token), and the answer is the same."""
    answers: dict[int, list[Delta]] = {}
    for interval_ms in (0, 200):
        worker = WorkerProcess("smollm2")
        load = load_message(str(embedded_model), 1024, 2, stream_interval_ms=interval_ms)
        await worker.start(load, timeout_s=60)
        try:
            submit = Submit("r1", PROMPT, max_tokens=48, temperature=0)
            messages = [m async for m in worker.generate(submit)]
        finally:
            await worker.stop()
        assert isinstance(messages[-1], Done) and messages[-1].completion_tokens == 48
        answers[interval_ms] = [m for m in messages if isinstance(m, Delta)]
    alone, grouped = answers[0], answers[200]
    assert "".join(d.text for d in grouped) == "".join(d.text for d in alone)
    assert sum(d.tokens for d in grouped) == sum(d.tokens for d in alone) >= 48
    assert grouped[0].tokens == 1
    assert len(grouped) * 3 <= len(alone), [d.tokens for d in grouped]


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


# --- one request never takes the worker down -------------------------------------------------


@pytest.fixture
async def worker(embedded_model: Path):  # type: ignore[no-untyped-def]
    handle = WorkerProcess("smollm2", send_timeout_s=30)
    await handle.start(load_message(str(embedded_model), 1024, 2, slots=2), timeout_s=60)
    yield handle
    await handle.stop()


async def still_serves(worker: WorkerProcess, pid: int | None) -> None:
    assert worker.alive and worker.pid == pid
    assert await worker.ping(timeout_s=30)
    pieces = [m async for m in worker.generate(Submit("next", PROMPT, max_tokens=3))]
    assert isinstance(pieces[-1], Done) and pieces[-1].finish_reason == "length"


async def test_an_oversized_frame_is_skipped_and_the_worker_keeps_answering(worker) -> None:
    pid = worker.pid
    assert worker.process is not None and worker.process.stdin is not None
    # What a daemon bug or a corrupted pipe could send: a header over the limit, its bytes.
    length = MAX_FRAME_BYTES + 1
    worker.process.stdin.write(length.to_bytes(4, "big") + bytes(length))
    # And a frame of the right size that is not a message.
    worker.process.stdin.write((5).to_bytes(4, "big") + b"\xc1junk")
    await worker.process.stdin.drain()

    await still_serves(worker, pid)


async def test_requests_the_engine_cannot_carry_are_refused_before_they_are_sent(worker) -> None:
    pid = worker.pid
    with pytest.raises(RequestTooLarge, match="limit of 67,108,864"):
        await anext(worker.generate(Submit("big", "a" * (MAX_FRAME_BYTES + 1), max_tokens=1)))
    with pytest.raises(UsageError, match="not valid Unicode"):
        await anext(worker.generate(Submit("bad", "lone \ud800 surrogate", max_tokens=1)))

    await still_serves(worker, pid)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": 5},
        {"type": "object", "properties": []},
        {"type": "array", "items": 5},
        {"$ref": "#/$defs/missing"},
        {"anyOf": {}},
        {"type": "string", "pattern": "("},
        {"enum": []},
        {"type": "object", "required": 7},
        {"allOf": [{"type": "string"}, {"type": "integer"}]},
    ],
)
async def test_a_malformed_json_schema_fails_its_request_only(worker, schema) -> None:
    pid = worker.pid
    submit = Submit("schema", PROMPT, max_tokens=8, json_schema=json.dumps(schema))
    try:
        async for _ in worker.generate(submit):
            pass  # some of these are valid enough to constrain the output: fine too
    except UsageError as error:
        assert error.code == "invalid_request_error"

    await still_serves(worker, pid)


async def test_a_grammar_that_allows_no_token_fails_its_request_not_the_worker(worker) -> None:
    pid = worker.pid
    # No token's text starts with NUL: llama.cpp rules every candidate out at the first step,
    # and its own sampler would then abort the whole process.
    submit = Submit("dead-end", PROMPT, max_tokens=8, grammar='root ::= "\\x00"')
    with pytest.raises(UsageError, match="allows no token"):
        async for _ in worker.generate(submit):
            pass

    await still_serves(worker, pid)


async def test_a_token_id_outside_the_vocabulary_is_refused(worker) -> None:
    pid = worker.pid
    submit = Submit("bias", PROMPT, max_tokens=2, logit_bias={10**7: 5.0})
    with pytest.raises(UsageError, match="not in this model's vocabulary"):
        await anext(worker.generate(submit))

    await still_serves(worker, pid)


async def test_penalty_last_n_minus_one_penalises_over_the_whole_context(worker) -> None:
    async def text(last_n: int) -> str:
        # Greedy, and no end-of-text: 60 tokens of a small model repeat themselves.
        submit = Submit(
            f"p{last_n}", PROMPT, max_tokens=60, temperature=0, repeat_penalty=1.5,
            penalty_last_n=last_n, logit_bias={0: -100.0, 2: -100.0},
        )  # fmt: skip
        return "".join([m.text async for m in worker.generate(submit) if isinstance(m, Delta)])

    whole = await text(-1)
    # -1 is not "off" (llama.cpp's sampler reads it so): it is as long as the context.
    assert whole == await text(1024)
    assert whole != await text(0)


async def test_an_empty_prompt_is_refused_instead_of_stalling_the_loop(worker) -> None:
    # Found by fuzzing: SmolLM2 adds no start token, so "" has no tokens, and the slot it took
    # waited forever for logits while the worker's loop spun.
    pid = worker.pid
    with pytest.raises(UsageError, match="the prompt is empty"):
        first = anext(worker.generate(Submit("empty", "", max_tokens=2)))
        await asyncio.wait_for(first, 60)  # a stalled request would never answer

    await still_serves(worker, pid)


def test_a_worker_starts_without_the_daemons_config_and_validation_libraries() -> None:
    # Every loaded model is a worker process: what its imports cost, each box pays per model.
    # The daemon's config and records (pydantic) and the self-test (numpy) once came along
    # through appliance.runtime's package import and cost each worker ~35 MiB.
    import subprocess
    import sys

    code = (
        "import sys, appliance.engine.worker.main\n"
        "print(sorted(m for m in ('numpy', 'pydantic', 'pydantic_settings', 'appliance.config',"
        " 'appliance.records') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"
