"""How the batcher plans a step, on its own (the real-worker behaviour is in test_batching)."""

from appliance.engine.worker.batcher import prompt_chunk


def test_a_long_prompt_goes_in_as_its_remainder_first_then_full_steps() -> None:
    chunks, pending = [], 700
    while pending:
        chunks.append(prompt_chunk(pending, room=256))
        pending -= chunks[-1]
    assert chunks == [188, 256, 256]
    assert prompt_chunk(512, room=256) == 256  # a whole number of steps: no short one
    assert prompt_chunk(40, room=256) == 40
    assert prompt_chunk(1, room=1) == 1  # a generating sequence: its one token
