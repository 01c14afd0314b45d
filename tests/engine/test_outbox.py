"""The worker's outbox: a step's frames leave together, and none is lost when the step fails."""

from __future__ import annotations

import io
import os

import pytest

from appliance.engine.messages import Delta, Done, from_worker_decoder, read_frame_sync
from appliance.engine.worker.main import Outbox


def pipe_outbox() -> tuple[Outbox, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    return Outbox(open(write_end, "wb", buffering=0)), read_end


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
