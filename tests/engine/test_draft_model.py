"""Speculative decoding with a draft model: the same text as without it, whoever drafts.

Real workers on the real SmolLM2 model: one drafting with SmolLM2 itself (a perfect drafter, so
nearly every guess holds), one drafting with a tiny random-weight model that carries SmolLM2's
exact vocabulary (a hopeless drafter, so guesses fail), and one without drafting. Greedy answers
must be byte-identical across the three, and the stats must show where guesses came from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.engine.client import WorkerProcess
from appliance.engine.messages import Delta, Done, Submit
from appliance.errors import EngineError
from helpers.copied_vocab import write_tiny_with_vocabulary_of
from helpers.runtime import load_message

STORY = (
    "<|im_start|>user\nWrite a short story about a lighthouse keeper and a storm.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
RECIPE = (
    "<|im_start|>user\nHow do I make a cup of green tea? Answer in three steps.<|im_end|>\n"
    "<|im_start|>assistant\n"
)

in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def random_drafter(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("drafter")
    # Padded past SmolLM2's table, as a smaller sibling of a larger model often is: its ids
    # beyond the served model's vocabulary must never be guessed.
    path = folder / "tiny-smollm2-vocab.gguf"
    return write_tiny_with_vocabulary_of(embedded_model, path, padding=64)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def workers(
    embedded_model: Path, random_drafter: Path
) -> AsyncIterator[dict[str, WorkerProcess]]:
    model = str(embedded_model)
    drafts = {"self": model, "random": str(random_drafter), "none": ""}
    started: dict[str, WorkerProcess] = {}
    try:
        for name, draft in drafts.items():
            worker = WorkerProcess(f"smollm2-{name}")
            ready = await worker.start(
                load_message(
                    model, 2048, 2, slots=2, draft_tokens=0 if name == "none" else 8,
                    draft_model_path=draft, draft_required=bool(draft),
                ),
                60,
            )  # fmt: skip
            assert ready.draft_model_loaded == bool(draft)
            started[name] = worker
        yield started
    finally:
        for worker in started.values():
            await worker.stop()


async def answer(worker: WorkerProcess, submit: Submit) -> str:
    text = ""
    async for message in worker.generate(submit):
        if isinstance(message, Delta):
            text += message.text
        else:
            assert isinstance(message, Done)
    return text


@in_module_loop
@pytest.mark.parametrize("prompt", [STORY, RECIPE], ids=["story", "recipe"])
async def test_a_model_drafting_for_itself_gives_the_same_greedy_text_with_guesses_kept(
    workers: dict[str, WorkerProcess], prompt: str
) -> None:
    before = await workers["self"].stats()
    drafted = await answer(workers["self"], Submit("a", prompt, max_tokens=64, temperature=0))
    after = await workers["self"].stats()
    plain = await answer(workers["none"], Submit("b", prompt, max_tokens=64, temperature=0))
    assert drafted == plain
    guessed = after.model_draft_tokens - before.model_draft_tokens
    kept = after.model_draft_accepted - before.model_draft_accepted
    assert kept > 20 and kept >= guessed * 0.8, after  # its own greedy guesses nearly all hold
    assert after.draft_tokens == after.lookup_draft_tokens + after.model_draft_tokens


@in_module_loop
async def test_a_random_drafter_with_the_same_vocabulary_changes_nothing_but_the_stats(
    workers: dict[str, WorkerProcess],
) -> None:
    before = await workers["random"].stats()
    drafted = await answer(workers["random"], Submit("c", STORY, max_tokens=64, temperature=0))
    after = await workers["random"].stats()
    plain = await answer(workers["none"], Submit("d", STORY, max_tokens=64, temperature=0))
    assert drafted == plain
    guessed = after.model_draft_tokens - before.model_draft_tokens
    kept = after.model_draft_accepted - before.model_draft_accepted
    # It guessed, missed, and so guessed less and less often: its share of held guesses fell,
    # and the drafting policy stops asking it while its guesses cannot pay.
    assert 1 <= guessed < 40 and kept < guessed * 0.3, after


@in_module_loop
async def test_seeded_sampling_gives_the_same_text_with_a_draft_model(
    workers: dict[str, WorkerProcess],
) -> None:
    request = dict(max_tokens=48, temperature=0.7, seed=5, repeat_penalty=1.1)
    drafted = await answer(workers["self"], Submit("e", STORY, **request))
    plain = await answer(workers["none"], Submit("f", STORY, **request))
    assert drafted == plain


@in_module_loop
async def test_two_conversations_drafting_at_once_each_get_their_own_text(
    workers: dict[str, WorkerProcess],
) -> None:
    import asyncio

    together = await asyncio.gather(
        answer(workers["self"], Submit("g", STORY, max_tokens=48, temperature=0)),
        answer(workers["self"], Submit("h", RECIPE, max_tokens=48, temperature=0)),
    )
    alone = [
        await answer(workers["none"], Submit("i", STORY, max_tokens=48, temperature=0)),
        await answer(workers["none"], Submit("j", RECIPE, max_tokens=48, temperature=0)),
    ]
    assert list(together) == alone


async def test_a_named_draft_model_that_cannot_load_fails_the_load_with_its_path(
    embedded_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-draft.gguf"
    broken.write_bytes(b"GGUF" + bytes(4096))
    worker = WorkerProcess("smollm2-broken-draft")
    load = load_message(
        str(embedded_model), 1024, 2, draft_model_path=str(broken), draft_required=True
    )
    with pytest.raises(EngineError, match=r"could not load the draft model .*broken-draft\.gguf"):
        await worker.start(load, 60)
    assert not worker.alive


async def test_an_automatic_draft_model_that_cannot_load_is_left_out(
    embedded_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-draft.gguf"
    broken.write_bytes(b"GGUF" + bytes(4096))
    worker = WorkerProcess("smollm2-auto-broken-draft")
    load = load_message(str(embedded_model), 1024, 2, draft_model_path=str(broken))
    ready = await worker.start(load, 60)
    try:
        assert not ready.draft_model_loaded
        assert await answer(worker, Submit("k", STORY, max_tokens=4, temperature=0))
    finally:
        await worker.stop()


@in_module_loop
async def test_more_slots_than_draft_streams_take_turns_and_keep_the_text(
    embedded_model: Path, workers: dict[str, WorkerProcess]
) -> None:
    # Six slots, four draft streams: each new conversation goes to the least recently used
    # slot, so the fifth and sixth find every stream holding another slot's tokens.
    worker = WorkerProcess("smollm2-six-slots")
    model = str(embedded_model)
    load = load_message(model, 1024, 2, slots=6, draft_model_path=model, draft_required=True)
    await worker.start(load, 60)
    try:
        topics = ["the sea", "a cat", "the moon", "a train", "a garden", "the rain"]
        for topic in topics:
            prompt = (
                f"<|im_start|>user\nWrite two sentences about {topic}.<|im_end|>\n"
                "<|im_start|>assistant\n"
            )
            before = await worker.stats()
            drafted = await answer(worker, Submit("m", prompt, max_tokens=24, temperature=0))
            after = await worker.stats()
            plain = await answer(workers["none"], Submit("n", prompt, max_tokens=24, temperature=0))
            assert drafted == plain, topic
            assert after.model_draft_accepted > before.model_draft_accepted, topic
    finally:
        await worker.stop()
