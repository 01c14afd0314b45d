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
drafting on every step made 8 and 16 streams 0.77-0.80x as fast on a 2-core VM). May import
nothing from the appliance.
"""

from __future__ import annotations

NGRAM = 3
"""Tokens matched before drafting: shorter matches guess wrong too often to pay."""
MIN_DRAFT = 2
MAX_REST = 8
"""Most steps a draft model sits out after guesses that all failed."""
DRAFT_STREAMS = 4
"""Most generating sequences in a step for a draft model to guess for, and its KV streams: its
decodes run before the main model's, one per guessed position, and pay only while the main
step is cheap (few sequences); fewer streams than slots also keep its KV cache small."""


class AdaptiveLength:
    """How many tokens to guess next: doubled after a fully accepted draft, halved (but never
    below what was just accepted plus one) when fewer than half held.

    For guesses that cost something to make (a draft model's decodes), `ready()` also sits out
    steps after a draft of which nothing held: 1, 2, 4, then `MAX_REST` steps while they keep
    failing, so a draft model that never agrees with the model costs a decode every few steps,
    not every step."""

    def __init__(self, max_draft: int) -> None:
        self.max_draft = max_draft
        self.value = max_draft
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
    """The n-gram index of one sequence, and the adaptive lengths of its guesses (by lookup,
    and by the draft model where one is loaded)."""

    def __init__(self, tokens: list[int], max_draft: int) -> None:
        self.max_draft = max_draft
        self.lookup_length = AdaptiveLength(max_draft)
        self.model_length = AdaptiveLength(max_draft)
        self.history: list[int] = []
        self._last_end: dict[tuple[int, ...], int] = {}
        self._previous: int | None = None
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

    def draft(self, room: int) -> list[int]:
        """Up to min(room, current length) tokens guessed to follow the history; may be []."""
        start = self._previous
        limit = min(room, self.lookup_length.value)
        if start is None or limit < 1:
            return []
        return self.history[start : start + limit]

    def feedback(self, drafted: int, accepted: int) -> None:
        """Adapt the lookup draft length to how many of `drafted` tokens were accepted."""
        self.lookup_length.feedback(drafted, accepted)


PROBE_EVERY = 64
"""Steps between two drafting steps while drafting does not pay: keeps the acceptance estimate
true to what the conversations now say, so drafting comes back when it pays again."""


class DraftPolicy:
    """Whether guesses pay in the next step, from what decode steps cost and guesses earned.

    A step of n real positions yields n tokens in T(n) seconds. With d guesses added it yields
    n + a*d (a: the share of guesses accepted) in T(n + d). Drafting pays when the second rate
    is the higher: nearly always at one stream, where a step is memory-bound and T barely grows
    with d; rarely with sixteen streams on a CPU, where each position costs compute. T is
    learned from decode-only steps (each position asks for logits, as guesses do; a prompt
    chunk does not), as a running average per step size, because it is not linear: flat while
    memory-bound, steep once compute-bound. a and the usual d are running averages too. A size
    never seen means drafting, which is how it is learned.
    """

    def __init__(self, smoothing: float = 0.1, probe_every: int = PROBE_EVERY) -> None:
        self.smoothing = smoothing
        self.probe_every = probe_every
        self.step_s: dict[int, float] = {}
        """Running average of a decode-only step's seconds, by its number of positions."""
        # Accepted and drafted guesses, decayed: the prior is one accepted in two.
        self._accepted, self._drafted = 1.0, 2.0
        self.usual_draft = 0.0
        """Running average of the guesses in a step that had some."""
        self._since_draft = 0

    @property
    def acceptance(self) -> float:
        return self._accepted / self._drafted

    def record_step(self, positions: int, seconds: float) -> None:
        """A decode-only step (every position asked for logits) and how long it took."""
        known = self.step_s.get(positions)
        self.step_s[positions] = (
            seconds if known is None else known + self.smoothing * (seconds - known)
        )

    def record_verify(self, drafted: int, accepted: int) -> None:
        """One sequence's guesses of a step and how many held."""
        if drafted:
            keep = 1.0 - self.smoothing
            self._accepted = self._accepted * keep + accepted
            self._drafted = self._drafted * keep + drafted

    def record_drafted(self, drafted: int) -> None:
        """All the guesses that went into one step (0 steps are not counted)."""
        if drafted:
            known = self.usual_draft or float(drafted)
            self.usual_draft = known + self.smoothing * (drafted - known)

    def worth_drafting(self, positions: int, room: int) -> bool:
        """Whether guesses (at most `room`) should ride in a step of `positions` real ones."""
        self._since_draft += 1
        guesses = max(1, round(min(room, self.usual_draft or room)))
        plain, drafted = self.step_s.get(positions), self.step_s.get(positions + guesses)
        if plain is None or drafted is None:
            pays = True  # a size not seen yet: draft, and learn what it costs
        else:
            pays = (positions + self.acceptance * guesses) * plain > positions * drafted
        if pays or self._since_draft >= self.probe_every:
            self._since_draft = 0
            return True
        return False
