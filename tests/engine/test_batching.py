"""Continuous batching in a real worker: concurrency, sampling, n, logprobs, grammar, prefix cache.

All against the real SmolLM2-135M model (and a tiny random DeepSeek-vocabulary model for the
reasoning budget) in real worker processes.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.engine.client import WorkerProcess
from appliance.engine.messages import Delta, Done, Submit
from appliance.errors import UsageError
from helpers.deepseek_vocab import BOS
from helpers.runtime import load_message
from helpers.tiny_gguf import write_tiny_llama


def chat(question: str, system: str = "") -> str:
    prefix = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{prefix}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


FRANCE = chat("What is the capital of France?")
NOTES = " ".join(
    f"On day {i} the {('north', 'south', 'east', 'west')[i % 4]} line made {100 + 7 * i} parts and "
    f"{i % 5} were sent back for rework."
    for i in range(30)
)

# One worker for the module: its tests share an event loop with it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worker(embedded_model: Path) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess("smollm2")
    await process.start(load_message(str(embedded_model), 2048, 2, slots=4, batch_tokens=256), 60)
    yield process
    await process.stop()


async def collect(worker: WorkerProcess, submit: Submit) -> tuple[dict[int, str], list[Done]]:
    texts: dict[int, str] = {}
    dones: list[Done] = []
    async for message in worker.generate(submit):
        if isinstance(message, Delta):
            texts[message.index] = texts.get(message.index, "") + message.text
        else:
            dones.append(message)
    return texts, dones


async def test_concurrent_requests_are_decoded_together(worker: WorkerProcess) -> None:
    before = await worker.stats()
    requests = [Submit(f"c{i}", FRANCE, max_tokens=12, temperature=0) for i in range(4)]
    results = await asyncio.gather(*(collect(worker, r) for r in requests))
    after = await worker.stats()
    assert all("Paris" in texts[0] for texts, _ in results)
    generated = sum(done[0].completion_tokens for _, done in results)
    steps = after.decode_steps - before.decode_steps
    # Four streams generating together need about as many steps as one stream has tokens.
    assert steps < generated * 0.6, f"{steps} decode steps for {generated} tokens"
    assert after.slots_total == 4


async def test_same_seed_alone_gives_the_same_text(worker: WorkerProcess) -> None:
    def request(rid: str) -> Submit:
        return Submit(rid, chat("Name a colour."), max_tokens=16, temperature=1.0, seed=7)

    first, _ = await collect(worker, request("s1"))
    second, _ = await collect(worker, request("s2"))
    assert first == second


async def test_n_choices_share_the_prompt_and_end_with_one_last_done(
    worker: WorkerProcess,
) -> None:
    submit = Submit("n3", chat("Tell me a fun fact."), max_tokens=12, temperature=1.2, seed=1, n=3)
    texts, dones = await collect(worker, submit)
    assert sorted(texts) == [0, 1, 2]
    assert sorted(d.index for d in dones) == [0, 1, 2]
    assert [d.last for d in dones] == [False, False, True]
    assert len(set(texts.values())) > 1, "different choices should differ"


async def test_more_choices_than_slots_is_refused(worker: WorkerProcess) -> None:
    with pytest.raises(UsageError, match="n=9 needs 9 sequence slots"):
        await collect(worker, Submit("n9", FRANCE, max_tokens=4, n=9))


async def test_greedy_picks_what_llama_cpp_s_sampler_chain_picks(worker: WorkerProcess) -> None:
    # Plain greedy reads the logits in place; a zero logit bias sends the same request through
    # llama.cpp's own chain (bias, then its greedy sampler): the texts must be the same.
    story = chat("Write a short story about a lighthouse keeper and a storm.")
    fast, _ = await collect(worker, Submit("g1", story, max_tokens=48, temperature=0))
    chain, _ = await collect(
        worker, Submit("g2", story, max_tokens=48, temperature=0, logit_bias={0: 0.0})
    )
    assert len(fast[0]) > 100 and fast == chain


async def test_logprobs_come_with_each_token(worker: WorkerProcess) -> None:
    submit = Submit("lp", FRANCE, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
    deltas = [m async for m in worker.generate(submit) if isinstance(m, Delta)]
    assert deltas
    for delta in deltas:
        [entry] = delta.logprobs or []
        assert entry.logprob <= 0
        assert len(entry.top) == 3
        assert [t.logprob for t in entry.top] == sorted(
            (t.logprob for t in entry.top), reverse=True
        )
        # Greedy decoding picks the most likely token.
        assert math.isclose(entry.logprob, entry.top[0].logprob, abs_tol=1e-4)


async def test_json_schema_constrains_the_output(worker: WorkerProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    submit = Submit(
        "js", chat("Describe Paris as JSON."), max_tokens=60, temperature=0,
        json_schema=json.dumps(schema),
    )  # fmt: skip
    texts, dones = await collect(worker, submit)
    assert dones[0].finish_reason == "stop"
    value = json.loads(texts[0])
    assert isinstance(value["city"], str) and isinstance(value["population"], int)


async def test_shared_system_prompt_is_served_from_the_prefix_cache(
    worker: WorkerProcess,
) -> None:
    system = "You are the office assistant of ACME. " * 20
    _, first = await collect(worker, Submit("p1", chat("Hi!", system), max_tokens=2))
    before = await worker.stats()
    _, second = await collect(worker, Submit("p2", chat("Hello there!", system), max_tokens=2))
    after = await worker.stats()
    assert second[0].cached_tokens > 0.8 * first[0].prompt_tokens
    assert after.prefix_cache_hits == before.prefix_cache_hits + 1


async def test_a_new_conversation_on_a_shared_system_prompt_leaves_the_other_one_cached(
    worker: WorkerProcess,
) -> None:
    """Two people on the office's system prompt: the second one's question must not overwrite
    the first one's conversation, whose next turn then starts from all of it."""
    system = "You are the travel desk of ACME. Answer in one short sentence. " * 8
    first_prompt = chat("Where is Lyon?", system)
    texts, [first] = await collect(worker, Submit("a1", first_prompt, 12, temperature=0))
    _, [other] = await collect(worker, Submit("b1", chat("Where is Turin?", system), 12))
    assert other.cached_tokens > 0.8 * len(system.split())  # the system prompt, copied
    follow_up = f"{first_prompt}{texts[0]}<|im_end|>\n" + chat("And Nice?")
    _, [next_turn] = await collect(worker, Submit("a2", follow_up, 2, temperature=0))
    # All of the first turn's prompt is reused, not just the system prompt the two share.
    assert next_turn.cached_tokens >= first.prompt_tokens


async def test_a_question_asked_again_reuses_its_own_slot_not_someone_elses(
    worker: WorkerProcess,
) -> None:
    """The module's worker has 4 slots: three conversations and one question fill them. Asking
    the question again must not take the oldest conversation's slot (a copy would evict it)."""
    firsts = {}
    for name in ("Lisbon", "Oslo", "Vienna"):
        prompt = chat(f"Describe {name} in one sentence.")
        texts, [done] = await collect(worker, Submit(name, prompt, 6, temperature=0))
        firsts[name] = (prompt + texts[0], done.prompt_tokens)
    question = chat("What is two plus two?")
    for attempt in range(2):
        _, [again] = await collect(worker, Submit(f"q{attempt}", question, 4, temperature=0))
    assert again.cached_tokens == again.prompt_tokens - 1
    for name, (so_far, prompt_tokens) in firsts.items():
        follow_up = f"{so_far}<|im_end|>\n" + chat("And its river?")
        _, [turn] = await collect(worker, Submit(f"{name}2", follow_up, 2, temperature=0))
        assert turn.cached_tokens >= prompt_tokens, name


async def test_stop_string_inside_a_token_cuts_the_text_before_it(worker: WorkerProcess) -> None:
    texts, dones = await collect(worker, Submit("st", FRANCE, 20, temperature=0, stop=["ari"]))
    assert dones[0].finish_reason == "stop"
    assert "ari" not in texts.get(0, "")
    assert texts[0].endswith("P")


async def test_prompt_longer_than_the_context_is_refused(worker: WorkerProcess) -> None:
    with pytest.raises(UsageError, match="each conversation may hold 2048"):
        await collect(worker, Submit("long", chat("word " * 3000), max_tokens=2))


async def test_embeddings_are_unit_vectors_of_the_model_width(worker: WorkerProcess) -> None:
    result = await worker.embed(["The cat sleeps.", "The cat sleeps.", "Stocks fell."], True, 60)
    first, same, other = result.vectors
    assert len(first) == 576  # SmolLM2-135M's embedding width
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-6)
    assert first == same and first != other
    assert result.prompt_tokens > 6


async def test_reasoning_budget_closes_the_thinking_block(tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny-r1.gguf")
    worker = WorkerProcess("tiny")
    await worker.start(load_message(str(model), 256, 1, slots=1), 60)
    try:
        submit = Submit(
            "rb", "<｜User｜>hi<｜Assistant｜><think>\n", max_tokens=20, temperature=1.0, seed=3,
            reasoning_budget=4, prompt_opens_thinking=True,
        )  # fmt: skip
        texts, _ = await collect(worker, submit)
    finally:
        await worker.stop()
    thinking, closed, _ = texts[0].partition("</think>")
    assert closed, f"no </think> in {texts[0]!r}"
    # The forced closing arrives right after the budget's fourth token.
    assert thinking.endswith("\n") and len(thinking) <= 4 * 16


async def test_a_prompt_that_writes_its_bos_gets_it_once(tmp_path: Path) -> None:
    # DeepSeek's template writes `<｜begin▁of▁sentence｜>` and the model adds BOS too: the
    # model must see one, as it was trained.
    model = write_tiny_llama(tmp_path / "tiny-r1.gguf")
    worker = WorkerProcess("tiny")
    await worker.start(load_message(str(model), 256, 1, slots=1), 60)
    try:
        turn = "<｜User｜>hi<｜Assistant｜>"
        _, [plain] = await collect(worker, Submit("plain", turn, max_tokens=1))
        _, [written] = await collect(worker, Submit("bos", BOS + turn, max_tokens=1))
    finally:
        await worker.stop()
    assert written.prompt_tokens == plain.prompt_tokens


async def test_a_conversation_stops_at_its_slots_context(embedded_model: Path) -> None:
    small = WorkerProcess("smollm2")
    await small.start(load_message(str(embedded_model), 64, 2, slots=2), 60)
    try:
        submit = Submit("ctx", chat("Tell me a long story."), max_tokens=500, temperature=0)
        _, dones = await collect(small, submit)
    finally:
        await small.stop()
    [done] = dones
    assert done.finish_reason == "length"
    assert done.prompt_tokens + done.completion_tokens <= 64


async def test_prefix_is_copied_from_a_conversation_still_running(worker: WorkerProcess) -> None:
    system = "You are the help desk of the ACME plant in Shenzhen. " * 15
    first = Submit("busy", chat("Tell me a long story.", system), max_tokens=200, temperature=0)
    second = Submit("copy", chat("Hi!", system), max_tokens=2)
    running = worker.generate(first)
    await anext(running)  # the first conversation is generating: its slot is busy
    _, dones = await collect(worker, second)
    await running.aclose()
    assert dones[0].cached_tokens > 0.8 * dones[0].prompt_tokens


async def test_cancelling_a_request_that_waits_for_a_slot_ends_it(embedded_model: Path) -> None:
    single = WorkerProcess("smollm2")
    await single.start(load_message(str(embedded_model), 256, 2, slots=1), 60)
    try:
        # SmolLM2's end-of-text (0) and <|im_end|> (2) are banned: "a" must keep the slot.
        endless = {0: -100.0, 2: -100.0}
        running = single.generate(Submit("a", FRANCE, max_tokens=250, logit_bias=endless))
        await anext(running)
        waiting = single.generate(Submit("b", FRANCE, max_tokens=200))
        pending = asyncio.ensure_future(anext(waiting))
        await asyncio.sleep(0.2)
        assert (await single.stats()).waiting == 1
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await waiting.aclose()  # the client went away before its turn
        await running.aclose()
        for _ in range(50):
            stats = await single.stats()
            if stats.waiting == 0 and stats.slots_busy == 0:
                break
            await asyncio.sleep(0.05)
        assert (stats.waiting, stats.slots_busy) == (0, 0)
    finally:
        await single.stop()


async def test_a_q8_0_kv_cache_gives_the_same_answer(embedded_model: Path) -> None:
    quantized = WorkerProcess("smollm2-q8")
    await quantized.start(
        load_message(str(embedded_model), 2048, 2, slots=2, kv_cache_type="q8_0"), 60
    )
    try:
        texts, _ = await collect(quantized, Submit("q8", FRANCE, max_tokens=12, temperature=0))
    finally:
        await quantized.stop()
    assert "Paris" in texts[0]


async def test_a_prompt_fed_in_several_steps_answers_as_one_fed_at_once(
    worker: WorkerProcess, embedded_model: Path
) -> None:
    # ~700 tokens: three steps of the module's worker (256 positions each), remainder first;
    # one call in a worker whose steps hold 2,048 (llama.cpp splits that one its own way).
    long = chat("Summarise the notes above in one sentence.", "Notes: " + NOTES)
    submit = Submit("chunks", long, max_tokens=16, temperature=0, logprobs=True)
    whole = WorkerProcess("smollm2-whole")
    await whole.start(load_message(str(embedded_model), 2048, 2, slots=1, batch_tokens=2048), 60)
    try:
        at_once = [m async for m in whole.generate(submit) if isinstance(m, Delta)]
        assert 600 < (await whole.stats()).prompt_tokens < 768
    finally:
        await whole.stop()
    in_steps = [m async for m in worker.generate(submit) if isinstance(m, Delta)]
    assert sum(len(d.text) for d in in_steps) > 20
    assert [d.text for d in in_steps] == [d.text for d in at_once]
    for chunked, single in zip(in_steps, at_once, strict=True):
        [a], [b] = chunked.logprobs or [], single.logprobs or []
        assert math.isclose(a.logprob, b.logprob, abs_tol=1e-3)
