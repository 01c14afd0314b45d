"""Continuous batching: admit requests into sequence slots, step them together, stream tokens.

Each `step()` is one `llama_decode` over a batch holding the next token of every generating
sequence plus prompt chunks of newly admitted ones (chunked prefill, capped by the batch size so
a long prompt never stalls the others), then one sampling pass per sequence that produced
logits. A new prompt reuses the longest cached prefix of any slot (a shared system prompt, the
earlier turns of a chat): the KV is kept or copied, and only the rest is decoded.

Speculative decoding by prompt lookup (`speculation.py`): a generating sequence whose last
tokens occurred before in its conversation puts the tokens that followed them into the same
step as guesses; each guess is kept only while the token sampled at its position equals it, so
the output is the same as without guessing, and one step may yield several tokens. Guesses are
limited per step (`SPEC_STEP_TOKENS`) so a full batch of streams never pays for them. Where a
draft model is loaded (`draft_model.py`), it guesses for the sequences prompt lookup has no
guess for (lookup is free, the draft model costs a decode per guessed position), while few
sequences generate (`DRAFT_STREAMS`); its guesses go through the same verification.
May import engine.messages and the worker's own modules.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.engine.messages import (
    Delta,
    Done,
    Failed,
    FromWorker,
    Stats,
    Submit,
)
from appliance.engine.worker.errors import RequestRejected
from appliance.engine.worker.slots import Choice, Slot, common_prefix
from appliance.engine.worker.speculation import (
    DRAFT_STREAMS,
    DraftPolicy,
    NgramDrafter,
    SharePriors,
)

if TYPE_CHECKING:
    # Either runtime drives the batcher: llama.cpp's, or onnxruntime's (`onnxrt.OnnxRuntime`,
    # same surface); neither is imported here, so an ONNX worker never loads llama.cpp.
    from appliance.engine.worker.llamacpp import LlamaRuntime

Sampler = Any

FORCED_THINK_END = "\n</think>\n\n"
MIN_PREFIX_COPY = 16
"""Fewer shared tokens than this (a chat template's first tokens) are recomputed rather than
copied from another slot."""
SPEC_STEP_TOKENS = 24
"""Most tokens in a step that may carry drafts: guesses ride free only while a decode step
is memory-bound (few sequences); with many streams each extra position costs compute."""


def runs(seqs: set[int]) -> int:
    """How many stretches of consecutive ids `seqs` make ({0, 1, 4, 5}: 2)."""
    return sum(1 for seq in seqs if seq - 1 not in seqs)


def goes_on(shared: int, slot: Slot) -> bool:
    """Whether a prompt whose first `shared` tokens are the slot's goes on with the
    conversation cached there, or asks it again: it keeps all of the slot's last prompt."""
    return 0 < min(slot.prompt_length, len(slot.cached)) <= shared


def prompt_chunk(pending: int, room: int) -> int:
    """How many of `pending` input tokens to decode in a step with `room` positions free.

    A prompt longer than the room goes in as its remainder first, then full chunks (94 + 512 +
    512, not 512 + 512 + 94). The same tokens reach the same positions either way; measured in
    the daemon, interleaved against the old order, a ~1,100-token cold prompt reached its first
    token 2.3% sooner, in every round (benchmarks/RESULTS.md: in the worker the first full chunk
    after an idle spell runs slower, and a short first chunk avoids that).
    """
    if pending <= room:
        return pending
    return pending % room or room


class Batcher:
    def __init__(self, runtime: LlamaRuntime | Any, send: Callable[[FromWorker], None]) -> None:
        self.rt = runtime
        self.send = send
        self.slots = [Slot(seq) for seq in range(runtime.slots)]
        self.waiting: deque[Submit] = deque()
        self.batch = runtime.new_batch()
        self.steps = 0
        self.prefix_hits = 0
        self.prefix_tokens = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.draft_tokens = 0
        self.draft_accepted = 0
        self.drafted = {"lookup": 0, "model": 0}
        self.accepted = {"lookup": 0, "model": 0}
        self.max_draft = max(0, getattr(runtime, "draft_tokens", 0))
        # The ONNX runtime has none; llama.cpp's has one where a draft model was loaded.
        self.draft_model = getattr(runtime, "draft_model", None) if self.max_draft else None
        self.draft_policy = DraftPolicy()
        self.share_priors = SharePriors()
        self.runs_matter = bool(getattr(runtime, "one_pass_per_run", False))
        """Whether a step decodes each run of consecutive sequence ids in a pass of its own."""
        self._decode_only = False  # whether the step being filled has no prompt positions

    # --- requests in and out -------------------------------------------------------------

    def submit(self, request: Submit) -> None:
        if request.n > len(self.slots):
            self.send(
                Failed(
                    request.id,
                    f"n={request.n} needs {request.n} sequence slots but this model has "
                    f"{len(self.slots)}; ask for fewer choices or raise engine.slots",
                    code="invalid_request_error",
                )
            )
            return
        self.waiting.append(request)

    def cancel(self, request_id: str) -> None:
        before = len(self.waiting)
        self.waiting = deque(r for r in self.waiting if r.id != request_id)
        if len(self.waiting) != before:
            self.send(Done(request_id, "cancelled", 0, 0))
        for slot in self.slots:
            if slot.choice is not None and slot.choice.request.id == request_id:
                self._finish(slot, "cancelled")

    def has_work(self) -> bool:
        return bool(self.waiting) or any(slot.busy for slot in self.slots)

    def stats(self, nonce: int) -> Stats:
        return Stats(
            nonce=nonce,
            slots_total=len(self.slots),
            slots_busy=sum(slot.busy for slot in self.slots),
            waiting=len(self.waiting),
            prefix_cache_hits=self.prefix_hits,
            prefix_cache_tokens=self.prefix_tokens,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
            decode_steps=self.steps,
            draft_tokens=self.draft_tokens,
            draft_accepted=self.draft_accepted,
            lookup_draft_tokens=self.drafted["lookup"],
            lookup_draft_accepted=self.accepted["lookup"],
            model_draft_tokens=self.drafted["model"],
            model_draft_accepted=self.accepted["model"],
        )

    # --- admission and prefix reuse ------------------------------------------------------

    def _admit(self) -> None:
        while self.waiting:
            request = self.waiting[0]
            free = [slot for slot in self.slots if not slot.busy]
            if len(free) < request.n:
                return  # first come, first served: later requests wait behind this one
            self.waiting.popleft()
            self._place(request, free)

    def _prepare(self, request: Submit) -> tuple[list[int], list[Sampler]] | None:
        """Tokens and samplers for a request, or None after failing it (and only it)."""
        samplers: list[Sampler] = []
        try:
            tokens = self.rt.tokenize(request.prompt)
            if not tokens:  # found by fuzzing: an empty slot would wait for logits forever
                raise RequestRejected(
                    "the prompt is empty (no tokens, and this model adds no start token); "
                    "send some text"
                )
            if len(tokens) >= self.rt.context_length:
                self.send(
                    Failed(
                        request.id,
                        f"the prompt is {len(tokens)} tokens but each conversation may hold "
                        f"{self.rt.context_length}; shorten it or raise engine.context_length",
                        code="context_length_exceeded",
                    )
                )
                return None
            grammar = self.rt.grammar_of(request)  # converted once for all n choices
            for k in range(request.n):
                samplers.append(self.rt.new_sampler(request, k, grammar))
        except Exception as error:
            for sampler in samplers:
                self.rt.free_sampler(sampler)
            self._reject(request.id, error)
            return None
        return tokens, samplers

    def _reject(self, request_id: str, error: Exception) -> None:
        if isinstance(error, RequestRejected):
            self.send(Failed(request_id, str(error), code="invalid_request_error"))
        else:
            traceback.print_exc(file=sys.stderr)
            self.send(Failed(request_id, f"the engine failed on this request ({error!r})"))

    def _place(self, request: Submit, free: list[Slot]) -> None:
        prepared = self._prepare(request)
        if prepared is None:
            return
        tokens, samplers = prepared
        source, shared = self._best_prefix(tokens)
        # At least the last prompt token must be decoded: its logits give the first token.
        reuse = min(shared, len(tokens) - 1)
        # In place only where the new prompt goes on with the source's conversation (or asks
        # it again): what in place drops is then the answer to it. A prompt that shares less
        # (a common system prompt, a chat template's first tokens) takes the least recently
        # used free slot, so the other conversation stays cached: a copy of the shared part
        # costs one KV buffer copy, where recomputing what in place would drop costs a
        # prefill (seconds on a CPU box). llama-server overwrites any slot whose cache is more
        # than 10% alike.
        # Where the runtime decodes a run of consecutive sequence ids in one pass, the slot
        # must also keep the busy ones in as few runs as it can: a conversation cached out of
        # line is copied into line rather than continued where it lies (one copy, against
        # reading the weights once more at every step it generates).
        taken = {slot.seq for slot in self.slots if slot.busy}
        fitting = self._fitting(free, taken)
        primary = self._going_on(fitting, tokens, source, shared)
        if primary is None:
            primary = min(fitting, key=lambda s: s.last_used)
        elif primary is not source:
            source = primary  # the same conversation cached again, in line: no copy
        if primary is not source and reuse < MIN_PREFIX_COPY:
            reuse = 0
        if primary is source:
            self.rt.forget(primary.seq, reuse)
        else:
            self.rt.forget(primary.seq)
            if source is not None and reuse > 0:
                self.rt.copy_prefix(source.seq, primary.seq, reuse)
        primary.cached = tokens[:reuse]
        primary.pending = tokens[reuse:]
        primary.prompt_length = len(tokens)
        primary.choice = Choice(request, 0, len(tokens), reuse, samplers[0])
        primary.drafter = self._drafter(tokens)
        if reuse:
            self.prefix_hits += 1
            self.prefix_tokens += reuse
        self.prompt_tokens += len(tokens)
        taken.add(primary.seq)
        rest = [s for s in free if s is not primary]
        for index in range(1, request.n):
            slot = min(self._fitting(rest, taken), key=lambda s: s.last_used)
            rest.remove(slot)
            taken.add(slot.seq)
            self.rt.forget(slot.seq)
            slot.cached, slot.pending = [], []
            slot.prompt_length = len(tokens)
            slot.choice = Choice(request, index, len(tokens), reuse, samplers[index])
            slot.drafter = self._drafter(tokens)
            slot.waiting_for_copy = True

    @staticmethod
    def _going_on(
        fitting: list[Slot], tokens: list[int], source: Slot | None, shared: int
    ) -> Slot | None:
        """A fitting slot whose conversation the prompt goes on with (or asks again), holding
        as much of it as the best cache anywhere: the prompt continues there, in place."""
        if source in fitting and goes_on(shared, source):
            return source
        for slot in fitting:
            if slot.cached and slot is not source:
                length = common_prefix(slot.cached, tokens)
                if length >= shared and goes_on(length, slot):
                    return slot
        return None

    def _fitting(self, free: list[Slot], taken: set[int]) -> list[Slot]:
        """The free slots that keep the `taken` sequence ids in fewest runs; all of them
        where the runtime does not care (ONNX) or nothing is taken."""
        if not self.runs_matter or not taken:
            return free
        added = {slot.seq: runs(taken | {slot.seq}) for slot in free}
        fewest = min(added.values())
        return [slot for slot in free if added[slot.seq] == fewest]

    def _close_gaps(self) -> None:
        """Move conversations until the busy slots are one run of consecutive sequence ids.

        A conversation that ends inside the run leaves a gap (new requests fill gaps first),
        and until something fills it every step makes one more pass over the weights: a third
        more per step for 8 streams on the 2-vCPU VM. Moving the last conversation into the
        gap costs one copy of its KV stream, about one step's time, once."""
        if not self.runs_matter:
            return
        while True:
            busy = [slot for slot in self.slots if slot.busy]
            taken = {slot.seq for slot in busy}
            if runs(taken) <= 1:
                return
            gap = next(s for s in self.slots if s.seq > min(taken) and not s.busy)
            self._move(max(busy, key=lambda slot: slot.seq), gap)

    def _move(self, mover: Slot, gap: Slot) -> None:
        """Put `mover`'s conversation on `gap`'s sequence id (the two slots trade ids). The
        conversation cached in the gap goes to the least recently used free slot outside the
        run, so its next turn still starts from it."""
        lowest = min(slot.seq for slot in self.slots if slot.busy)
        outside = [
            s for s in self.slots
            if not s.busy and s is not gap and (s.seq < lowest or s.seq > mover.seq)
        ]  # fmt: skip
        if gap.cached and outside:
            keeper = min(outside, key=lambda s: s.last_used)
            self.rt.copy_prefix(gap.seq, keeper.seq, len(gap.cached))
            keeper.cached, keeper.prompt_length = gap.cached, gap.prompt_length
            keeper.last_used = gap.last_used
        # Copies run in order at the next decode, from the buffers as they are now.
        if mover.cached:
            self.rt.copy_prefix(mover.seq, gap.seq, len(mover.cached))
        else:
            self.rt.forget(gap.seq)
        self.rt.forget(mover.seq)
        mover.seq, gap.seq = gap.seq, mover.seq
        gap.cached, gap.prompt_length = [], 0
        self.slots.sort(key=lambda slot: slot.seq)

    def _drafter(self, tokens: list[int]) -> NgramDrafter | None:
        return NgramDrafter(tokens, self.max_draft, self.share_priors) if self.max_draft else None

    def _best_prefix(self, tokens: list[int]) -> tuple[Slot | None, int]:
        best: Slot | None = None
        best_length = 0
        for slot in self.slots:
            if slot.waiting_for_copy:
                continue
            length = common_prefix(slot.cached, tokens)
            # Prefer a free slot on ties: reusing it in place needs no copy.
            if length > best_length or (
                length == best_length > 0 and best is not None and best.busy and not slot.busy
            ):
                best, best_length = slot, length
        return best, best_length

    # --- one decode step ------------------------------------------------------------------

    def step(self) -> None:
        self._admit()
        self._close_gaps()
        outputs = self._fill_batch()
        if self.batch.n_tokens == 0:
            self._fail_stalled()
            return
        started = time.perf_counter()
        result = self.rt.decode(self.batch)
        if self._decode_only and result == 0:
            self.draft_policy.record_step(self.batch.n_tokens, time.perf_counter() - started)
        self.steps += 1
        if result != 0:
            self._fail_batch(result)
            return
        for batch_index, slot in outputs:
            choice = slot.choice
            if choice is None:
                continue
            if slot.draft:
                self._verify_or_fail(slot, batch_index)
                continue
            if choice.index == 0:
                self._start_siblings(slot, batch_index)
            self._sample_or_fail(slot, batch_index)

    def _fill_batch(self) -> list[tuple[int, Slot]]:
        batch, budget = self.batch, self.rt.batch_tokens
        count = 0
        outputs: list[tuple[int, Slot]] = []
        # Generating sequences first (one token each), then prompt chunks in the room left.
        active = [s for s in self.slots if s.busy and s.pending]
        active.sort(key=lambda s: len(s.pending) > 1)
        generating = [s for s in active if len(s.pending) == 1]
        self._decode_only = len(generating) == len(active)
        spare = min(budget, SPEC_STEP_TOKENS) - len(generating)  # positions guesses may take
        for slot in active:
            slot.draft = []
        if spare > 0 and self.max_draft:
            real = min(budget, sum(len(s.pending) for s in active))
            self._plan_drafts(generating, spare, real)
            # Lookup's guesses cost nothing to make, only to decode: keep the ones that pay.
            guessing = [slot for slot in generating if slot.draft]
            keep = self.draft_policy.choose(
                real, [(len(slot.draft), self._share(slot)) for slot in guessing]
            )
            for index, slot in enumerate(guessing):
                if index not in keep:
                    slot.draft = []
        plans: list[tuple[Slot, list[int]]] = []
        room = budget
        for slot in active:
            if room <= 0:
                slot.draft = []
                break
            del slot.draft[max(0, room - 1) :]  # never binds: guesses fit in the spare
            take = slot.pending[: prompt_chunk(len(slot.pending), room)]
            if slot.draft:
                take = take + slot.draft
            room -= len(take)
            plans.append((slot, take))
        # In sequence id order: llama.cpp decodes sequences in one pass only while each next
        # one in the batch has the next id (one KV stream per slot).
        plans.sort(key=lambda plan: plan[0].seq)
        for slot, take in plans:
            start = len(slot.cached)
            for offset, token in enumerate(take):
                batch.token[count] = token
                batch.pos[count] = start + offset
                batch.n_seq_id[count] = 1
                batch.seq_id[count][0] = slot.seq
                batch.logits[count] = False
                count += 1
            # Guesses are not cached tokens until verified (`_verify_or_fail` adds them).
            slot.cached.extend(take[: len(take) - len(slot.draft)])
            slot.pending = slot.pending[len(take) - len(slot.draft) :]
            if slot.draft:  # logits at the real token and at every guess, to verify them
                for index in range(count - len(take), count):
                    batch.logits[index] = True
                outputs.append((count - len(take), slot))
            elif not slot.pending:  # the whole input is in: this position's logits are needed
                batch.logits[count - 1] = True
                outputs.append((count - 1, slot))
        batch.n_tokens = count
        return outputs

    @staticmethod
    def _share(slot: Slot) -> float:
        """The running share of this sequence's guesses (of the kind it has now) that held."""
        drafter = slot.drafter
        if drafter is None:
            return 0.0
        return drafter.length_for(slot.draft_source).share

    def _plan_drafts(self, generating: list[Slot], spare: int, positions: int) -> None:
        """Set the guesses of generating slots, `spare` positions in all: prompt lookup's where
        it has one, else the draft model's (all of those in one go, batched)."""
        asking: list[tuple[Slot, int]] = []
        model = self.draft_model is not None and len(generating) <= DRAFT_STREAMS
        for slot in generating:
            if spare <= 0:
                break
            room = self._draft_room(slot, spare)
            if room <= 0 or slot.drafter is None:
                continue
            guess = slot.drafter.draft(room)
            if guess:
                slot.draft, slot.draft_source = guess, "lookup"
                spare -= len(guess)
            elif (
                model
                and slot.drafter.model_length.ready()
                and self.draft_policy.pays(
                    positions,
                    min(room, slot.drafter.model_length.value),
                    slot.drafter.model_length.share,
                )
            ):
                wanted = min(room, slot.drafter.model_length.value)
                asking.append((slot, wanted))
                spare -= wanted
        if not asking:
            return
        assert self.draft_model is not None
        try:
            drafts = self.draft_model.draft(
                [(slot.seq, slot.cached + slot.pending, wanted) for slot, wanted in asking]
            )
        except Exception:
            # Guesses only ever save time: a draft model that fails is dropped, and the
            # conversations go on without it.
            traceback.print_exc(file=sys.stderr)
            print("worker: the draft model failed; going on without it", file=sys.stderr)
            self.draft_model = None
            return
        for slot, wanted in asking:
            slot.draft, slot.draft_source = drafts.get(slot.seq, [])[:wanted], "model"

    def _draft_room(self, slot: Slot, spare: int) -> int:
        """Most guesses for a generating slot (none while its prompt is still going in)."""
        choice = slot.choice
        if choice is None or choice.generated == 0:
            return 0
        return min(
            spare,
            choice.request.max_tokens - choice.generated - 1,
            self.rt.context_length - len(slot.cached) - 2,
        )

    def _verify_or_fail(self, slot: Slot, first_index: int) -> None:
        """Sample at the real token's position, then at each guess while the guesses hold.

        The batch held [real token, guess 1 … guess k]: the logits at position i give the
        token after it; guess i+1 stands when the token sampled there equals it. Only sampled
        tokens are ever emitted, so every sampler (seeded, penalised, with a grammar) sees
        exactly what one-token steps would have shown it.
        """
        draft, slot.draft = slot.draft, []
        choice = slot.choice
        accepted = 0
        try:
            for i in range(len(draft) + 1):
                token = self._sample(slot, first_index + i)
                if token is None or len(slot.pending) != 1 or i == len(draft) or token != draft[i]:
                    break  # finished, thinking forced closed, no guess left, or a wrong guess
                # The guess stands: its KV is in place, so it is cached, not fed again.
                slot.cached.append(token)
                slot.pending = []
                accepted += 1
        except Exception as error:
            if choice is not None:
                self.fail_request(choice.request, error)
            return
        # The KV holds the real token and every guess: drop the guesses that fell.
        if accepted < len(draft):
            self.rt.forget(slot.seq, len(slot.cached))
        self.draft_tokens += len(draft)
        self.draft_accepted += accepted
        source = slot.draft_source
        self.drafted[source] += len(draft)
        self.accepted[source] += accepted
        if slot.drafter is not None:
            slot.drafter.feedback(len(draft), accepted, source)

    def _start_siblings(self, primary: Slot, batch_index: int) -> None:
        request = primary.choice.request if primary.choice else None
        for slot in self.slots:
            if slot.waiting_for_copy and slot.choice and slot.choice.request is request:
                self.rt.copy_prefix(primary.seq, slot.seq, len(primary.cached))
                slot.cached = list(primary.cached)
                slot.waiting_for_copy = False
                self._sample_or_fail(slot, batch_index)

    def _sample_or_fail(self, slot: Slot, batch_index: int) -> None:
        """Sample a slot's next token; a failure ends that slot's request, not the worker."""
        choice = slot.choice
        if choice is None:  # its request failed while a sibling was sampled
            return
        try:
            self._sample(slot, batch_index)
        except Exception as error:
            self.fail_request(choice.request, error)

    def _sample(self, slot: Slot, batch_index: int) -> int | None:
        """Sample and emit a slot's next token; the token while generation goes on, or None
        when this token ended it."""
        choice = slot.choice
        assert choice is not None and choice.sampler is not None
        request = choice.request
        token = self.rt.sample(choice.sampler, batch_index)
        if self.rt.is_end_of_generation(token):
            self._finish(slot, "stop")
            return None
        choice.generated += 1
        self.generated_tokens += 1
        if choice.in_thinking:
            choice.thinking_tokens += 1
        logprobs = (
            [self.rt.logprobs(batch_index, token, request.top_logprobs)]
            if request.logprobs
            else None
        )
        text = choice.add_piece(self.rt.piece(token))
        if text or logprobs:
            self.send(Delta(request.id, text, 1, choice.index, logprobs))
        if choice.finish_reason is not None:
            self._finish(slot, choice.finish_reason)
            return None
        if choice.generated >= request.max_tokens or len(slot.cached) + 1 >= self.rt.context_length:
            self._finish(slot, "length")
            return None
        slot.pending = [token]
        if slot.drafter is not None:
            slot.drafter.extend(slot.pending)
        if choice.over_reasoning_budget():
            self._close_thinking(slot)
        return token

    def _close_thinking(self, slot: Slot) -> None:
        """Past the reasoning budget: feed `</think>` so the model moves on to its answer."""
        choice = slot.choice
        assert choice is not None and choice.sampler is not None
        forced = self.rt.tokenize(FORCED_THINK_END, add_bos=False)
        for token in forced:
            self.rt.accept(choice.sampler, token)
        slot.pending.extend(forced)
        if slot.drafter is not None:
            slot.drafter.extend(forced)
        choice.in_thinking = False
        self.send(Delta(choice.request.id, FORCED_THINK_END, len(forced), choice.index))

    def _finish(self, slot: Slot, reason: str) -> None:
        choice = slot.choice
        assert choice is not None
        rest = choice.flush()
        if rest and reason != "cancelled":
            self.send(Delta(choice.request.id, rest, 0, choice.index))
        if choice.sampler is not None:
            self.rt.free_sampler(choice.sampler)
        slot.choice = None
        slot.pending, slot.draft, slot.drafter = [], [], None
        slot.waiting_for_copy = False
        slot.last_used = self.steps
        still_running = any(
            s.choice is not None and s.choice.request is choice.request for s in self.slots
        )
        self.send(
            Done(
                choice.request.id,
                reason,
                choice.prompt_tokens,
                choice.generated,
                index=choice.index,
                cached_tokens=choice.cached_tokens,
                last=not still_running,
            )
        )

    def _fail_stalled(self) -> None:
        """Busy slots and nothing to decode: no step can ever move them (a bug, not the
        request's fault), and the loop would spin forever. Fail their requests instead."""
        for slot in self.slots:
            if slot.choice is not None:
                self.fail_request(slot.choice.request, RuntimeError(f"slot {slot.seq} stalled"))

    def fail_request(self, request: Submit, error: Exception) -> None:
        """End every choice of `request` with Failed; the other requests keep going."""
        for slot in self.slots:
            if slot.choice is not None and slot.choice.request is request:
                self._release(slot)
        self._reject(request.id, error)

    def fail_all(self, error: Exception) -> None:
        """After a step failed in a way no single request explains: fail the busy ones."""
        failed: set[str] = set()
        for slot in self.slots:
            choice = slot.choice
            if choice is None:
                continue
            self._release(slot)
            if choice.request.id not in failed:
                failed.add(choice.request.id)
                self.send(Failed(choice.request.id, f"the engine failed ({error!r})"))

    def _release(self, slot: Slot) -> None:
        if slot.choice is not None and slot.choice.sampler is not None:
            self.rt.free_sampler(slot.choice.sampler)
        self.rt.forget(slot.seq)
        slot.cached, slot.pending, slot.choice = [], [], None
        slot.draft, slot.drafter = [], None
        slot.waiting_for_copy = False

    def _fail_batch(self, result: int) -> None:
        """A decode that failed leaves every busy sequence's KV in doubt: fail them all."""
        reason = (
            "the model's KV cache is full; retry, or lower engine.slots or engine.context_length"
            if result == 1
            else f"llama.cpp failed to decode (error {result})"
        )
        failed: set[str] = set()
        for slot in self.slots:
            choice = slot.choice
            if choice is None:
                continue
            if choice.request.id not in failed:
                failed.add(choice.request.id)
                self.send(Failed(choice.request.id, reason))
            if choice.sampler is not None:
                self.rt.free_sampler(choice.sampler)
            self.rt.forget(slot.seq)
            slot.cached, slot.pending, slot.choice = [], [], None
            slot.draft, slot.drafter = [], None
            slot.waiting_for_copy = False
