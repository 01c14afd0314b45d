"""How the batcher plans a step, on its own (the real-worker behaviour is in test_batching)."""

from appliance.engine.worker.batcher import goes_on, prompt_chunk
from appliance.engine.worker.slots import Slot


def test_a_long_prompt_goes_in_as_its_remainder_first_then_full_steps() -> None:
    chunks, pending = [], 700
    while pending:
        chunks.append(prompt_chunk(pending, room=256))
        pending -= chunks[-1]
    assert chunks == [188, 256, 256]
    assert prompt_chunk(512, room=256) == 256  # a whole number of steps: no short one
    assert prompt_chunk(40, room=256) == 40
    assert prompt_chunk(1, room=1) == 1  # a generating sequence: its one token


def cached(prompt: int, answer: int) -> Slot:
    """A slot that answered a `prompt`-token prompt with `answer` tokens (all but the last
    sampled one are in its KV)."""
    return Slot(seq=0, cached=list(range(prompt + answer - 1)), prompt_length=prompt)


def test_a_conversation_goes_on_in_its_slot_and_others_leave_it_alone() -> None:
    question = cached(prompt=40, answer=128)
    assert goes_on(40, question)  # asked again: the shared part is the whole prompt
    assert goes_on(167, question)  # the next turn, which carries the answer
    assert not goes_on(3, question)  # only the chat template's first tokens
    office = cached(prompt=1110, answer=300)
    assert not goes_on(1100, office)  # the same system prompt, someone else's question
    assert not goes_on(0, Slot(seq=1))  # nothing cached
