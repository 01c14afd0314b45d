"""The worker's outbox: a step's frames leave together, none is lost when the step fails, and
a fast stream's tokens leave a few at a time, never its first token and never late."""

from __future__ import annotations

import io
import os

import pytest

from appliance.engine.messages import (
    Delta,
    Done,
    Failed,
    Pong,
    TokenLogprob,
    from_worker_decoder,
    read_frame_sync,
)
from appliance.engine.worker.outbox import Outbox


class Clock:
    """Time that moves only when the test says, so "held for 30 ms" is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pipe_outbox(interval_s: float = 0.0, clock: Clock | None = None) -> tuple[Outbox, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    stream = open(write_end, "wb", buffering=0)  # noqa: SIM115 (closed with the pipe)
    return Outbox(stream, print, interval_s, clock or Clock()), read_end


def step(outbox: Outbox, clock: Clock, seconds: float, *sent: object) -> None:
    """One decode step of `seconds` that ends by sending `sent`."""
    with outbox.gathered():
        clock.now += seconds
        for message in sent:
            outbox.send(message)  # type: ignore[arg-type]


def available(read_end: int) -> bytes:
    try:
        return os.read(read_end, 1 << 16)
    except BlockingIOError:
        return b""


def messages(data: bytes) -> list[object]:
    stream, found = io.BytesIO(data), []
    while (payload := read_frame_sync(stream)) is not None:
        found.append(from_worker_decoder.decode(payload))
    return found


def test_frames_of_a_step_are_written_together_when_it_ends() -> None:
    outbox, read_end = pipe_outbox()
    with outbox.gathered():
        outbox.send(Delta("a", "Paris"))
        outbox.send(Delta("b", "Rome"))
        assert available(read_end) == b""  # held until the step is over
    assert messages(available(read_end)) == [Delta("a", "Paris"), Delta("b", "Rome")]

    outbox.send(Done("a", "stop", 5, 1))  # outside a step: at once
    assert messages(available(read_end)) == [Done("a", "stop", 5, 1)]


def test_a_failing_step_still_sends_what_it_gathered() -> None:
    outbox, read_end = pipe_outbox()
    with pytest.raises(RuntimeError), outbox.gathered():
        outbox.send(Delta("a", "Par"))
        raise RuntimeError("decode failed")
    assert messages(available(read_end)) == [Delta("a", "Par")]


def test_a_fast_streams_tokens_leave_merged_once_the_interval_is_up() -> None:
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=0.030, clock=clock)
    step(outbox, clock, 0.007, Delta("a", "The"))
    assert messages(available(read_end)) == [Delta("a", "The")]  # the first token: at once

    step(outbox, clock, 0.007, Delta("a", " capital"))  # held from here
    step(outbox, clock, 0.007, Delta("a", " of"))
    step(outbox, clock, 0.007, Delta("a", " France", tokens=2))
    step(outbox, clock, 0.007, Delta("a", " is"))
    # Held 21 ms: after one more 7 ms step it would still be within 30 ms.
    assert available(read_end) == b""
    step(outbox, clock, 0.007, Delta("a", " Paris"))
    # Held 28 ms: another step would make it 35. Out now, as one Delta.
    assert messages(available(read_end)) == [Delta("a", " capital of France is Paris", tokens=6)]


def test_merged_tokens_keep_their_logprobs_in_order() -> None:
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=1.0, clock=clock)
    first, second, third = (TokenLogprob(t, -0.5) for t in ("A", "B", "C"))
    step(outbox, clock, 0.01, Delta("a", "A", logprobs=[first]))
    step(outbox, clock, 0.01, Delta("a", "B", logprobs=[second]))
    step(outbox, clock, 0.01, Delta("a", "C", logprobs=[third]))
    outbox.flush()
    assert messages(available(read_end)) == [
        Delta("a", "A", logprobs=[first]),
        Delta("a", "BC", tokens=2, logprobs=[second, third]),
    ]


def test_the_end_of_an_answer_sends_what_was_held_before_it() -> None:
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=1.0, clock=clock)
    step(outbox, clock, 0.007, Delta("a", "Paris"))
    step(outbox, clock, 0.007, Delta("a", "."))
    step(outbox, clock, 0.007, Done("a", "stop", 9, 2))
    assert messages(available(read_end)) == [
        Delta("a", "Paris"),
        Delta("a", "."),
        Done("a", "stop", 9, 2),
    ]


def test_another_answers_first_token_is_not_held_and_takes_the_held_ones_along() -> None:
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=1.0, clock=clock)
    step(outbox, clock, 0.007, Delta("a", "One"))
    step(outbox, clock, 0.007, Delta("a", " two"))
    assert messages(available(read_end)) == [Delta("a", "One")]
    step(outbox, clock, 0.007, Delta("a", " three"), Delta("b", "Hello"))
    assert messages(available(read_end)) == [Delta("a", " two three", 2), Delta("b", "Hello")]


def test_slow_tokens_are_never_held() -> None:
    """A model slower than the interval streams token by token, as with no interval at all."""
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=0.030, clock=clock)
    for text in ("Slow", " and", " steady"):
        step(outbox, clock, 0.040, Delta("a", text))
        assert messages(available(read_end)) == [Delta("a", text)]


def test_anything_but_a_token_goes_out_at_once_with_the_held_ones() -> None:
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=1.0, clock=clock)
    step(outbox, clock, 0.007, Delta("a", "x"))
    step(outbox, clock, 0.007, Delta("a", "y"))
    available(read_end)
    outbox.send(Pong(7))  # a heartbeat between steps must not wait
    assert messages(available(read_end)) == [Delta("a", "y"), Pong(7)]


def test_after_a_failure_the_same_answer_starts_afresh() -> None:
    """A Failed ends every choice of its request: nothing of it stays marked as streaming."""
    clock = Clock()
    outbox, read_end = pipe_outbox(interval_s=1.0, clock=clock)
    step(outbox, clock, 0.007, Delta("a", "x"), Delta("a", "y", index=1))
    step(outbox, clock, 0.007, Failed("a", "the engine failed"))
    available(read_end)
    step(outbox, clock, 0.007, Delta("a", "again"))
    assert messages(available(read_end)) == [Delta("a", "again")]


def test_no_interval_sends_every_token_with_its_step() -> None:
    clock = Clock()
    outbox, read_end = pipe_outbox(clock=clock)
    for text in ("a", "b", "c"):
        step(outbox, clock, 0.001, Delta("a", text))
        assert messages(available(read_end)) == [Delta("a", text)]
