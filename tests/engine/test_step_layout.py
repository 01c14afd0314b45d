"""The batcher keeps the sequences it decodes together on consecutive slots, in order.

llama.cpp (one KV stream per slot) decodes a step in one pass only while each next sequence id
in the batch is the last one's plus one; at every gap it starts another pass over all the
weights. Measured on the 2-vCPU VM with SmolLM2-135M: 8 sequences on ids 0-7 took 43 ms a step,
on 0-1 and 4-9 57 ms, on the even ids 0-14 (or 0-7 in reverse order) 108-115 ms. These tests
drive the real batcher on the real runtime (`helpers.step_layout`) and read every batch it gave
llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.step_layout import record


def passes(step: list[int]) -> int:
    """How many passes llama.cpp makes over a batch with these sequence ids, in this order."""
    count, last = 0, None
    for seq in step:
        if seq == last:
            continue
        if last is None or seq != last + 1:
            count += 1
        last = seq
    return count


def test_passes_counts_what_llama_cpp_splits() -> None:
    assert passes([0, 1, 2, 2, 2, 3]) == 1  # a sequence with guesses or a prompt chunk
    assert passes([0, 1, 4, 5]) == 2
    assert passes([3, 2]) == 2  # only ascending ids go in one pass


@pytest.fixture(scope="module")
def asked_again(embedded_model: Path) -> dict:
    return record(embedded_model, "asked-again")


def test_questions_cached_out_of_line_are_decoded_in_one_pass(asked_again: dict) -> None:
    """A long answer runs in slot 2; the questions cached in slots 5 and 0 are asked again, and
    a new one with two choices: every step still goes through llama.cpp in one pass."""
    steps = asked_again["steps"]
    assert max(len(set(step)) for step in steps) == 5  # all five decoded together at some point
    assert [passes(step) for step in steps] == [1] * len(steps)


def test_a_question_moved_into_line_keeps_its_cache_and_its_answer(asked_again: dict) -> None:
    ends, texts = asked_again["ends"], asked_again["texts"]
    for again, first in (("again5", "first5"), ("again0", "first0"), ("long", "first2")):
        # All of the prompt but its last token (whose logits give the first token) is reused.
        assert ends[again]["cached"] == ends[again]["prompt"] - 1, again
        assert texts[again].startswith(texts[first]), again
    assert "failed" not in ends["pair"]


@pytest.fixture(scope="module")
def middle_ends_first(embedded_model: Path) -> dict:
    return record(embedded_model, "middle-ends-first")


def test_when_the_middle_answer_ends_the_others_close_up(middle_ends_first: dict) -> None:
    """Three conversations continue in slots 1, 2 and 3; the middle one ends first. The last
    one moves into its slot, and its answer goes on as if nothing had moved."""
    steps, texts = middle_ends_first["steps"], middle_ends_first["texts"]
    assert len(set(steps[0])) == 3 and len(set(steps[-1])) == 2
    assert [passes(step) for step in steps] == [1] * len(steps)
    assert texts["right"].startswith(texts["first3"])
    assert len(texts["right"]) > len(texts["first3"]) + 40  # it went on well past the move


def test_the_conversation_that_ended_keeps_its_cache_for_its_next_turn(
    middle_ends_first: dict,
) -> None:
    ends, texts = middle_ends_first["ends"], middle_ends_first["texts"]
    again = ends["middle again"]
    assert again["cached"] == again["prompt"] - 1
    assert texts["middle again"] == texts["first2"]


def test_a_conversation_already_cached_in_line_is_used_without_a_copy(
    embedded_model: Path,
) -> None:
    """Conversation 1 is cached in slots 0, 1 and 2 and slot 3 is busy: asked again, it goes on
    in slot 2 as it is, rather than copied from slot 0 to slot 4."""
    layout = record(embedded_model, "already-in-line")
    assert layout["copies"] == []
    assert layout["ends"]["once"]["cached"] == layout["ends"]["once"]["prompt"] - 1
    assert sorted(set(layout["steps"][-1])) == [3]  # slot 3 went on alone after slot 2 ended
    assert [passes(step) for step in layout["steps"]] == [1] * len(layout["steps"])
