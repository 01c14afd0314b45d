"""Speculative decoding by prompt lookup: same tokens as without it, fewer decode steps.

The drafter's index on its own, then two real workers on the real SmolLM2 model, one drafting
and one not, asked the same things: the answers must match token for token (greedy, and seeded
sampling), and the drafting one must have guessed and kept guesses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.engine.client import WorkerProcess
from appliance.engine.messages import Delta, Done, Submit
from appliance.engine.worker.speculation import (
    PROBE_BUDGET,
    QUOTE_MATCH,
    STALE_STEPS,
    AdaptiveLength,
    DraftPolicy,
    NgramDrafter,
    SharePriors,
)
from helpers.runtime import load_message

TEXT = " ".join(
    f"Item {i}: the meeting room on floor {i % 7 + 1} is booked by team {chr(65 + i % 26)} "
    f"from {8 + i % 9}:00 until {9 + i % 9}:30 for the weekly review."
    for i in range(8)
)
EDIT = (
    "<|im_start|>user\nRepeat the following text exactly, word for word, but write 'floor 3' "
    f"as 'floor three'. Output only the text.\n\n{TEXT}<|im_end|>\n<|im_start|>assistant\n"
)
STORY = (
    "<|im_start|>user\nWrite a short story about a lighthouse keeper and a storm.<|im_end|>\n"
    "<|im_start|>assistant\n"
)

# The workers are shared by the module, so are the async tests' event loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


def test_the_drafter_guesses_what_followed_the_last_tokens_before() -> None:
    drafter = NgramDrafter([5, 6, 7, 8, 9, 10, 1, 2, 5, 6], max_draft=3)
    assert drafter.draft(room=8) == []  # (5, 6) is two tokens: no three-token match yet
    drafter.extend([7])
    assert drafter.draft(room=8) == [8, 9, 10]
    assert drafter.draft(room=2) == [8, 9]


def test_the_draft_length_shrinks_when_guesses_fail_and_grows_back() -> None:
    drafter = NgramDrafter([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3], max_draft=8)
    assert len(drafter.draft(room=8)) == 8
    drafter.feedback(drafted=8, accepted=0)
    assert len(drafter.draft(room=8)) == 4
    drafter.feedback(drafted=4, accepted=4)
    assert len(drafter.draft(room=8)) == 8


def policy_after(step_ms: dict[int, float]) -> DraftPolicy:
    """A policy that has seen decode steps of these sizes take these times."""
    policy = DraftPolicy()
    for _ in range(20):
        for positions, ms in step_ms.items():
            policy.record_step(positions, ms / 1000)
    return policy


# Step times (ms) by positions. A memory-bound step (a large model, a GPU) takes barely longer
# with guesses; on the 2-core VM with SmolLM2 (zen4 variant, 2026-12-01) every position costs
# compute, at one stream as at sixteen.
ONE_STREAM = {1: 30.0, 9: 34.0}
ONE_STREAM_COMPUTE_BOUND = {1: 10.5, 2: 14.4, 3: 18.0, 5: 27.0, 9: 41.7}
SIXTEEN_STREAMS = {16: 100.0, 24: 140.0}


def test_guesses_ride_along_while_a_step_costs_little_more_with_them() -> None:
    policy = policy_after({**ONE_STREAM, **SIXTEEN_STREAMS})
    assert policy.choose(1, [(8, 0.3)]) == {0}


def test_with_many_streams_on_a_compute_bound_step_only_a_quoting_sequence_guesses() -> None:
    policy = policy_after({**ONE_STREAM, **SIXTEEN_STREAMS})
    # Sixteen stories and one edit among them: only the edit's guesses hold often enough.
    assert policy.choose(16, [(3, 0.3), (4, 0.95), (1, 0.4)]) == {1}
    assert policy.choose(16, [(4, 0.3), (4, 0.4)]) == set()


def test_a_policy_that_stopped_drafting_still_lets_guesses_ride_now_and_then() -> None:
    policy = policy_after(SIXTEEN_STREAMS)
    decisions = [policy.choose(16, [(8, 0.1)]) for _ in range(400)]
    probes = decisions.count({0})
    # Each probe costs T(24) - T(16) = 40 ms over 100 ms steps: 1% of 400 steps buys ten.
    assert probes == pytest.approx(400 * 100.0 * PROBE_BUDGET / 40.0, abs=1)


def test_on_a_compute_bound_stream_only_guesses_that_often_hold_ride() -> None:
    policy = policy_after(ONE_STREAM_COMPUTE_BOUND)
    assert policy.choose(1, [(8, 0.05)]) == set()  # prose: a three-token coincidence
    assert policy.choose(1, [(8, 0.9)]) == {0}  # quoting: an edit, a summary


def test_a_new_worker_lets_guesses_ride_to_measure_what_they_cost() -> None:
    policy = policy_after({1: 10.5})  # only one-position steps seen: nothing says
    assert policy.choose(1, [(8, 0.1)]) == {0}
    policy.record_step(9, 0.0417)
    assert policy.step_time(5) == pytest.approx(0.0261)  # between the sizes seen: interpolated


def test_a_step_size_not_seen_yet_is_estimated_from_the_sizes_seen() -> None:
    policy = policy_after(ONE_STREAM_COMPUTE_BOUND)
    # Two streams: 10 and 18 positions lie beyond what one stream showed, on its line.
    assert policy.step_time(18) == pytest.approx(0.0417 + 9 * (0.0417 - 0.027) / 4)
    assert policy.choose(2, [(8, 0.1), (8, 0.1)]) == set()  # two stories: not even to learn
    assert policy.choose(2, [(8, 0.1), (8, 0.9)]) == {1}  # an edit beside a story


def test_guesses_that_are_not_expected_to_pay_spend_no_more_than_the_probe_budget() -> None:
    # Prose on a compute-bound stream: a one-position step takes 10 ms, one with 8 guesses 50 ms,
    # and the step after that 14 ms (llama.cpp builds its graph for the other size again).
    policy = policy_after({1: 10.0})
    spent = guessing = 0.0
    rides, previous = [], 0.010
    for _ in range(20_000):
        ride = policy.choose(1, [(8, 0.1)]) == {0}
        seconds = 0.050 if ride else (0.014 if previous == 0.050 else 0.010)
        policy.record_step(9 if ride else 1, seconds)
        spent, guessing, previous = spent + seconds, guessing + seconds - 0.010, seconds
        rides.append(ride)
    # The first ride measures what guesses cost (nothing said it yet), and nothing else rides
    # until decoding has paid that back: 44 ms at the budget's share of each 10 ms step.
    assert rides[0]
    assert rides.index(True, 1) >= 0.044 / (PROBE_BUDGET * 0.010)
    # All in all guesses ride now and then, and cost what the budget allows, not more.
    assert rides.count(True) >= 10
    assert PROBE_BUDGET / 2 < guessing / spent <= PROBE_BUDGET


def test_a_sequence_s_share_of_held_guesses_follows_what_it_now_writes() -> None:
    length = AdaptiveLength(max_draft=8)
    for _ in range(6):
        length.feedback(drafted=8, accepted=8)
    assert length.share > 0.9
    for _ in range(6):
        length.feedback(drafted=4, accepted=0)
    assert length.share < 0.15


def test_a_quoting_match_is_told_apart_from_a_coincidence() -> None:
    quoted = list(range(100, 100 + QUOTE_MATCH + 4))
    drafter = NgramDrafter([*quoted, 7, *quoted[:QUOTE_MATCH]], max_draft=4)
    assert drafter.draft(room=8) == quoted[QUOTE_MATCH : QUOTE_MATCH + 4]
    assert drafter.drafted_quoting
    coincidence = NgramDrafter([1, 2, 3, 4, 5, 6, 9, 9, 9, 2, 3, 4], max_draft=4)
    assert coincidence.draft(room=8) == [5, 6, 9, 9]
    assert not coincidence.drafted_quoting


def test_a_new_conversation_starts_from_what_earlier_ones_showed() -> None:
    priors = SharePriors()
    for _ in range(30):  # prose: short matches that keep missing, quotes that hold
        priors.feedback(False, 8, 0)
        priors.feedback(True, 8, 8)
    fresh = NgramDrafter([], max_draft=8, priors=priors)
    assert fresh.lookup_length.share < 0.1
    assert fresh.quote_length.share > 0.9
    # So on the compute-bound stream a new answer's first short-match guess stays home.
    policy = policy_after(ONE_STREAM_COMPUTE_BOUND)
    assert policy.choose(1, [(8, fresh.lookup_length.share)]) == set()
    assert policy.choose(1, [(8, fresh.quote_length.share)]) == {0}


def test_a_draft_model_that_keeps_failing_is_not_asked_by_new_conversations_for_long() -> None:
    priors = SharePriors()
    policy = policy_after(ONE_STREAM_COMPUTE_BOUND)
    first = NgramDrafter([], max_draft=8, priors=priors)
    # An untried draft model is asked (its guesses cost decodes, and catching it up on the
    # conversation first).
    assert policy.pays(1, 8, first.model_length.share)
    for _ in range(20):  # conversations whose draft-model guesses all failed
        drafter = NgramDrafter([], max_draft=8, priors=priors)
        drafter.feedback(8, 0, source="model")
    fresh = NgramDrafter([], max_draft=8, priors=priors)
    assert not policy.pays(1, 8, fresh.model_length.share)
    # Written off, but not for good: after enough new conversations it is tried again.
    retried = next(
        n for n in range(1, 500)
        if policy.pays(1, 8, NgramDrafter([], max_draft=8, priors=priors).model_length.share)
    )  # fmt: skip
    assert 10 < retried < 200


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def workers(embedded_model: Path) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    drafting = WorkerProcess("smollm2-spec")
    plain = WorkerProcess("smollm2-plain")
    await drafting.start(load_message(str(embedded_model), 2048, 2, slots=2, draft_tokens=8), 60)
    await plain.start(load_message(str(embedded_model), 2048, 2, slots=2, draft_tokens=0), 60)
    yield drafting, plain
    await drafting.stop()
    await plain.stop()


async def answer(worker: WorkerProcess, submit: Submit) -> tuple[str, Done]:
    text = ""
    done = None
    async for message in worker.generate(submit):
        if isinstance(message, Delta):
            text += message.text
        elif isinstance(message, Done):
            done = message
    assert done is not None
    return text, done


@in_module_loop
async def test_an_edit_gives_the_same_tokens_in_fewer_steps_with_guesses_accepted(
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    drafting, plain = workers
    before = await drafting.stats()
    fast, fast_done = await answer(drafting, Submit("e1", EDIT, max_tokens=160, temperature=0))
    after = await drafting.stats()
    slow, slow_done = await answer(plain, Submit("e2", EDIT, max_tokens=160, temperature=0))
    assert fast == slow
    assert fast_done.completion_tokens == slow_done.completion_tokens
    accepted = after.draft_accepted - before.draft_accepted
    assert accepted > fast_done.completion_tokens // 3, (accepted, after)
    steps = after.decode_steps - before.decode_steps
    assert steps < fast_done.completion_tokens * 0.75, (steps, fast_done.completion_tokens)
    assert (await plain.stats()).draft_tokens == 0


@in_module_loop
@pytest.mark.parametrize("prompt", [EDIT, STORY], ids=["edit", "story"])
async def test_seeded_sampling_gives_the_same_text_with_and_without_guesses(
    workers: tuple[WorkerProcess, WorkerProcess], prompt: str
) -> None:
    drafting, plain = workers
    request = dict(max_tokens=96, temperature=0.7, seed=11, repeat_penalty=1.1)
    fast, _ = await answer(drafting, Submit("s1", prompt, **request))
    slow, _ = await answer(plain, Submit("s2", prompt, **request))
    assert fast == slow


def test_a_draft_model_that_keeps_missing_sits_out_more_steps_until_it_hits() -> None:
    length = AdaptiveLength(max_draft=8)
    sat_out = []
    for _ in range(5):
        assert length.ready()
        length.feedback(drafted=4, accepted=0)
        steps = 0
        while not length.ready():
            steps += 1
        sat_out.append(steps)
    assert sat_out == [1, 2, 4, 8, 8]
    assert length.value == 2  # and its guesses shrank to the shortest
    length.feedback(drafted=2, accepted=2)
    assert length.ready() and length.value == 4  # a hit: no rest, and the length grows back


def test_a_step_time_measured_while_the_cores_were_busy_is_measured_again_later() -> None:
    # Something else took the cores while guesses rode: a 9-position step looked 10x dearer.
    policy = policy_after({1: 10.5, 9: 420.0})
    assert policy.choose(1, [(8, 0.9)]) == set()  # an edit's guesses, judged too dear
    # Then only one-position steps (nobody guesses), at the machine's normal speed.
    for _ in range(STALE_STEPS + 64):
        policy.record_step(1, 0.0105)
    # The old 9-position time is no longer trusted: the edit's guesses ride to measure it.
    assert policy.choose(1, [(8, 0.9)]) == {0}
    policy.record_step(9, 0.0417)
    assert policy.step_time(9) == pytest.approx(0.0417)  # the fresh time, not a blend
    assert policy.choose(1, [(8, 0.9)]) == {0}
