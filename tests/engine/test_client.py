"""The daemon's end of the worker's stdout pipe: frames however the bytes arrive, and a corrupt
stream stops the reading instead of mis-routing tokens. (The worker itself is exercised end to
end in test_worker_process.py; a real worker cannot be made to write a corrupt stream.)"""

from __future__ import annotations

import asyncio
import contextlib
import os

from appliance.engine.client import _FrameReader
from appliance.engine.messages import MAX_FRAME_BYTES, Delta, Done, encode_frame


async def read_pipe(chunks: list[bytes]) -> tuple[list[object], bool]:
    """Write `chunks` into a real pipe one by one (letting the loop read each), then close it;
    what the reader dispatched and how the stream ended."""
    loop = asyncio.get_running_loop()
    got: list[object] = []
    frames = _FrameReader(got.append, loop.create_future())
    read_end, write_end = os.pipe()
    pipe = open(read_end, "rb", buffering=0)  # noqa: SIM115 (the transport closes it)
    await loop.connect_read_pipe(lambda: frames, pipe)
    try:
        for chunk in chunks:
            # A reader that gave up has closed its end: the worker would get EPIPE, too.
            with contextlib.suppress(BrokenPipeError):
                os.write(write_end, chunk)
            await asyncio.sleep(0.01)
    finally:
        os.close(write_end)
    return got, await asyncio.wait_for(frames.ended, 5)


async def test_frames_split_and_joined_anyhow_arrive_whole_and_in_order() -> None:
    stream = b"".join(
        encode_frame(m) for m in (Delta("a", "Par"), Delta("a", "is"), Done("a", "stop", 5, 2))
    )
    # One byte at a time, then all at once: the same three messages either way.
    split, ended_split = await read_pipe([stream[i : i + 1] for i in range(len(stream))])
    joined, ended_joined = await read_pipe([stream])

    expected = [Delta("a", "Par"), Delta("a", "is"), Done("a", "stop", 5, 2)]
    assert split == joined == expected
    assert ended_split and ended_joined


async def test_a_corrupt_stream_ends_the_reading_after_the_good_frames() -> None:
    good = encode_frame(Delta("a", "ok"))
    oversized = (MAX_FRAME_BYTES + 1).to_bytes(4, "big")
    got, ended_well = await read_pipe([good + oversized + bytes(64), good])
    assert got == [Delta("a", "ok")]  # nothing after the corruption is trusted
    assert ended_well is False

    got, ended_well = await read_pipe([good + (5).to_bytes(4, "big") + b"\xc1junk", good])
    assert got == [Delta("a", "ok")]
    assert ended_well is False
