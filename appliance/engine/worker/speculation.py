"""Prompt-lookup drafting for speculative decoding: guess a sequence's next tokens from its past.

When an answer repeats what its conversation already holds (editing or summarising a text,
quoting code, filling a form), the tokens that followed the last few tokens the previous time
are a good guess at what follows them now. `NgramDrafter` keeps, per sequence, an index from
each n-gram of its tokens to where that n-gram last ended, and proposes the tokens that followed
it. The batcher decodes the drafts with the real next token in one step and keeps a drafted
token only when the token sampled from the model's own logits at that position equals it, so
the output is exactly what decoding one token at a time would give, for any sampler.

No model, no download: drafting costs a dictionary lookup per step, and a wrong guess costs the
extra positions of one decode (cheap while decoding is memory-bound). The draft length adapts:
it grows while guesses are accepted and shrinks when they are not. The same rule sizes the
guesses of a draft model (`draft_model.py`), kept apart per sequence: the two kinds of guess
hold for different stretches of text. Whether a step carries guesses at all is `DraftPolicy`'s
call: with many streams a decode step is compute-bound and every guessed position costs nearly
what a real token costs, so guesses pay only when they are accepted often enough (measured:
drafting on every step made 8 and 16 streams 0.77-0.80x as fast on a 2-core VM; on the same VM
even one stream is compute-bound, each guessed position costing a third of a token). A guess
from a long match (the answer is quoting its conversation: an edit, a summary, a loop) holds far
more often than one from a three-token coincidence in prose, so the shares are kept apart by
match strength, and a new conversation starts from what this worker's earlier ones showed
(`SharePriors`), not from an optimistic constant. May import nothing from the appliance.
"""

from __future__ import annotations

NGRAM = 3
"""Tokens matched before drafting: shorter matches guess wrong too often to pay."""
QUOTE_MATCH = 8
"""Tokens of agreement with an earlier stretch of the conversation from which a lookup guess
counts as quoting (its share and length are kept apart from those of shorter matches)."""
MIN_DRAFT = 2
MAX_REST = 8
"""Most steps a draft model sits out after guesses that all failed."""
DRAFT_STREAMS = 4
"""Most generating sequences in a step for a draft model to guess for, and its KV streams: its
decodes run before the main model's, one per guessed position, and pay only while the main
step is cheap (few sequences); fewer streams than slots also keep its KV cache small."""


PRIOR_SHARE = 0.5
"""The share of guesses expected to hold before this worker has seen any held or fail."""
SHARE_SMOOTHING = 0.3
"""Weight of the latest draft in a sequence's running share: a conversation turns from prose to
quoting within a few steps, and the share must follow it."""
PRIOR_SMOOTHING = 0.1
"""Weight of the latest draft in the worker-wide shares new conversations start from."""


MODEL_PRIOR_RECOVERY = 0.02
"""Part of the way back to `PRIOR_SHARE` the draft model's prior goes with each new conversation.
Its guesses cost decodes to make, so a low prior stops them from being asked at all, and only
this brings a retry: after a run of failures, about one conversation in fifty."""


class SharePriors:
    """The share of guesses that held across this worker's conversations, for quoting lookup
    matches, for short ones and for the draft model: where a new conversation's shares start.
    A fixed optimistic start made every new prose answer pay for a long failed guess (measured:
    0.95x at one stream with drafting on), and with a draft model that rarely agrees, for
    catching the draft model up on the conversation (up to 256 tokens) before its first guess:
    0.90x with a layer-truncated SmolLM2 as the draft model."""

    def __init__(self) -> None:
        self.lookup = PRIOR_SHARE
        self.quote = PRIOR_SHARE
        self.model = PRIOR_SHARE

    def model_start(self) -> float:
        """The draft model's share for a new conversation (each one moves it a little back
        towards the optimistic start, so a draft model once written off is tried again)."""
        self.model += MODEL_PRIOR_RECOVERY * (PRIOR_SHARE - self.model)
        return self.model

    def model_feedback(self, drafted: int, accepted: int) -> None:
        if drafted:
            self.model += PRIOR_SMOOTHING * (accepted / drafted - self.model)

    def feedback(self, quoting: bool, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        held = accepted / drafted
        if quoting:
            self.quote += PRIOR_SMOOTHING * (held - self.quote)
        else:
            self.lookup += PRIOR_SMOOTHING * (held - self.lookup)


class AdaptiveLength:
    """How many tokens to guess next: doubled after a fully accepted draft, halved (but never
    below what was just accepted plus one) when fewer than half held.

    For guesses that cost something to make (a draft model's decodes), `ready()` also sits out
    steps after a draft of which nothing held: 1, 2, 4, then `MAX_REST` steps while they keep
    failing, so a draft model that never agrees with the model costs a decode every few steps,
    not every step."""

    def __init__(self, max_draft: int, share: float = PRIOR_SHARE) -> None:
        self.max_draft = max_draft
        self.value = max_draft
        self.share = share
        """Running share of this sequence's guesses that held (`DraftPolicy` weighs them)."""
        self.rest = 0
        """Steps still to sit out."""
        self._backoff = 0

    def ready(self) -> bool:
        """Whether to guess this step (counts a step sat out)."""
        if self.rest > 0:
            self.rest -= 1
            return False
        return True

    def feedback(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        self.share += SHARE_SMOOTHING * (accepted / drafted - self.share)
        if accepted == 0:
            self._backoff = min(max(1, self._backoff * 2), MAX_REST)
            self.rest = self._backoff
        else:
            self._backoff = 0
        if accepted == drafted:
            self.value = min(self.max_draft, self.value * 2)
        elif accepted < drafted // 2:
            self.value = max(MIN_DRAFT, accepted + 1, self.value // 2)


class NgramDrafter:
    """The n-gram index of one sequence, and the adaptive lengths of its guesses: by lookup from
    a short match, by lookup from a quoting one, and by the draft model where one is loaded."""

    def __init__(
        self, tokens: list[int], max_draft: int, priors: SharePriors | None = None
    ) -> None:
        self.max_draft = max_draft
        self.priors = priors if priors is not None else SharePriors()
        self.lookup_length = AdaptiveLength(max_draft, self.priors.lookup)
        self.quote_length = AdaptiveLength(max_draft, self.priors.quote)
        self.model_length = AdaptiveLength(max_draft, self.priors.model_start())
        self.history: list[int] = []
        self._last_end: dict[tuple[int, ...], int] = {}
        self._previous: int | None = None
        self.drafted_quoting = False
        """Whether the last lookup draft came from a quoting match (its feedback goes there)."""
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append tokens of the sequence (prompt, sampled ones) in order."""
        history, index = self.history, self._last_end
        for token in tokens:
            history.append(token)
            if len(history) >= NGRAM:
                key = tuple(history[-NGRAM:])
                # Where this n-gram ended before (not now): the tokens after it are the guess.
                self._previous = index.get(key)
                index[key] = len(history)
            else:
                self._previous = None

    def quoting(self) -> bool:
        """Whether the last `QUOTE_MATCH` tokens also stood, in order, before the match."""
        start = self._previous
        if start is None or start < QUOTE_MATCH:
            return False
        history = self.history
        return history[start - QUOTE_MATCH : start] == history[-QUOTE_MATCH:]

    def length_for(self, source: str) -> AdaptiveLength:
        """The length (and share) of the guess last drafted: the draft model's (`model`), or
        that of the kind of lookup match it came from (`lookup`)."""
        if source == "model":
            return self.model_length
        return self.quote_length if self.drafted_quoting else self.lookup_length

    def draft(self, room: int) -> list[int]:
        """Up to min(room, current length) tokens guessed to follow the history; may be []."""
        start = self._previous
        if start is None:
            return []
        self.drafted_quoting = self.quoting()
        limit = min(room, self.length_for("lookup").value)
        if limit < 1:
            return []
        return self.history[start : start + limit]

    def feedback(self, drafted: int, accepted: int, source: str = "lookup") -> None:
        """Adapt the last draft's length and share (and, for lookup, the worker's priors)."""
        self.length_for(source).feedback(drafted, accepted)
        if source == "lookup":
            self.priors.feedback(self.drafted_quoting, drafted, accepted)
        elif source == "model":
            self.priors.model_feedback(drafted, accepted)


PROBE_BUDGET = 0.005
"""Share of decode time spent on guesses the policy does not expect to pay: now and then they
all ride anyway, so each sequence's share stays true to what it now writes and drafting comes
back when it pays again. The same budget pays for measuring what a step costs with guesses in
it where nothing measured says so yet, and for the slower step that follows a step of another
size (llama.cpp builds its compute graph again). Probing at a fixed interval instead cost 3% at
one stream on a 2-core VM, where nine positions take four times as long as one; a 1% budget
with those measurements outside it cost 1-3% on a story."""


STALE_STEPS = 1000
"""Decode-only steps after which a step size's time is measured afresh instead of trusted. A
size with guesses in it is only seen while guesses ride, so a time measured while something
else took the cores (a backup, a package build, another process's burst) would otherwise stand
for good: drafting judged too dear and never tried again (measured: two busy processes for one
round of the benchmark took an edit from 97 to 70 tok/s in every round after it). Re-measuring
a size costs one step with its guesses, at most once per this many steps."""
_FORGET_EVERY = 64
"""Steps between sweeps for stale sizes (a sweep is a pass over the sizes seen)."""


class DraftPolicy:
    """Which sequences' guesses pay in the next step, from what decode steps cost and what each
    sequence's guesses have earned.

    A step of n real positions yields n tokens in T(n) seconds: the rate n / T(n). A sequence
    whose guesses hold with share a adds g positions and a*g expected tokens; they pay when
    their own rate, a*g / (T(n + g) - T(n)), beats the step's. Sequences are taken best share
    first, each against the step as the ones before left it. With one stream a step is
    memory-bound and T barely grows with g: guesses nearly always pay. With sixteen streams on
    a CPU each position costs compute: only a sequence that quotes (an edit, a summary) pays.
    T is learned from decode-only steps (each position asks for logits, as guesses do; a prompt
    chunk does not) as a running average per step size, because it is not linear; between sizes
    seen it is interpolated, and beyond them extrapolated from the nearest two. With one size
    seen (a new worker; or the others forgotten, not seen for `STALE_STEPS`) nothing says what
    guesses cost: they ride to measure it, unless the probe budget is spent.

    Guesses that ride without being expected to pay (probes, and those measuring) are charged
    to one budget, `probe_budget` of decode time, at what they turned out to cost.
    """

    def __init__(self, smoothing: float = 0.1, probe_budget: float = PROBE_BUDGET) -> None:
        self.smoothing = smoothing
        self.probe_budget = probe_budget
        self.step_s: dict[int, float] = {}
        """Running average of a decode-only step's seconds, by its number of positions."""
        self._seen_at: dict[int, int] = {}
        """The step (of `_steps`) at which each size in `step_s` was last seen."""
        self._steps = 0
        self._probe_credit = 0.0
        """Seconds of decoding that unpaid guesses may still spend (`probe_budget` of each
        step); below zero after a measurement that cost more than was saved up."""
        self._charged: tuple[int, float] | None = None
        """The step just chosen with unpaid guesses in it: its size without them, and what
        they were charged (corrected to what they cost once the step is timed)."""
        self._after_unpaid = False
        """Whether the last step timed had unpaid guesses (the next one's extra time is theirs)."""

    def record_step(self, positions: int, seconds: float) -> None:
        """A decode-only step (every position asked for logits) and how long it took."""
        self._settle(positions, seconds)
        self._steps += 1
        if self._steps % _FORGET_EVERY == 0:
            self._forget_stale()
        known = self.step_s.get(positions)
        self.step_s[positions] = (
            seconds if known is None else known + self.smoothing * (seconds - known)
        )
        self._seen_at[positions] = self._steps

    def _settle(self, positions: int, seconds: float) -> None:
        """Charge unpaid guesses what they cost: the time their step took beyond the step
        without them, and then the next step's time beyond its usual (a graph rebuilt)."""
        if self._after_unpaid:
            self._after_unpaid = False
            usual = self.step_s.get(positions)
            if usual is not None:
                self._probe_credit -= max(0.0, seconds - usual)
        if self._charged is None:
            return
        without, charged = self._charged
        self._charged = None
        self._after_unpaid = True
        base = self.step_time(without)
        if base is not None:
            self._probe_credit += charged - max(0.0, seconds - base)

    def _forget_stale(self) -> None:
        oldest = self._steps - STALE_STEPS
        for positions in [n for n, seen in self._seen_at.items() if seen < oldest]:
            del self.step_s[positions], self._seen_at[positions]

    def step_time(self, positions: int) -> float | None:
        """T(positions): seen, or estimated from the two sizes seen nearest to it (between
        them, or beyond them on a line through them); None while fewer than two were seen."""
        if positions in self.step_s:
            return self.step_s[positions]
        if len(self.step_s) < 2:
            return None
        below = [n for n in self.step_s if n < positions]
        above = [n for n in self.step_s if n > positions]
        if below and above:
            low, high = max(below), min(above)
        elif below:
            low, high = sorted(below)[-2:]
        else:
            low, high = sorted(above)[:2]
        t_low, t_high = self.step_s[low], self.step_s[high]
        estimate = t_low + (t_high - t_low) * (positions - low) / (high - low)
        if not above:  # a bigger step is no faster than the biggest seen
            return max(estimate, t_high)
        if not below:  # a smaller one takes at least its share of the smallest seen
            return max(estimate, t_low * positions / low)
        return estimate

    def pays(self, positions: int, guesses: int, share: float) -> bool:
        """Whether one sequence's `guesses` alone would pay in a step of `positions` (asked
        before a draft model spends decodes making them)."""
        now, then = self.step_time(positions), self.step_time(positions + guesses)
        if now is None or then is None:
            return self._probe_credit >= 0  # nothing measured yet: draft, to learn the cost
        return share * guesses * now > positions * (then - now)

    def choose(self, positions: int, candidates: list[tuple[int, float]]) -> set[int]:
        """Which of `candidates` ((guesses, share held) per sequence, by index) ride in a step
        of `positions` real positions."""
        self._charged = None  # a step chosen before and never timed keeps what it was charged
        chosen: set[int] = set()
        tokens, size = float(positions), positions
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i][1])
        for index in order:
            guesses, share = candidates[index]
            if guesses <= 0:
                continue
            now, then = self.step_time(size), self.step_time(size + guesses)
            if now is None or then is None:
                continue  # nothing measured says: a probe's (or a measurement's) to decide
            extra = then - now
            if extra <= 0 or share * guesses * now > tokens * extra:
                chosen.add(index)
                tokens += share * guesses
                size += guesses
        return chosen | self._probe(positions, size, candidates, chosen)

    def _probe(
        self, positions: int, size: int, candidates: list[tuple[int, float]], chosen: set[int]
    ) -> set[int]:
        """The guesses left out, once the probe budget saved up pays for all of them (or, with
        nothing measured yet to say what they cost, while the budget is not overspent)."""
        step = self.step_time(positions)
        if step is not None:
            self._probe_credit += self.probe_budget * step
        left = [i for i, (guesses, _) in enumerate(candidates) if guesses > 0 and i not in chosen]
        if not left:
            return set()
        with_them = self.step_time(size + sum(candidates[i][0] for i in left))
        without = self.step_time(size)
        cost = 0.0 if with_them is None or without is None else with_them - without
        if cost > self._probe_credit or self._probe_credit < 0:
            return set()
        # Savings beyond one probe are not kept: a long quiet spell would pay for a burst.
        self._probe_credit = min(0.0, self._probe_credit - cost)
        self._charged = (size, cost)
        return set(left)
