"""One sequence slot: the request choice it serves, its cached tokens, and its output text.

A slot owns everything per sequence that is not native: which tokens its KV holds (for prefix
reuse), what is still to be fed, how many tokens it generated, and the text that has not been
sent yet — held back while it might be the start of a stop string, or an incomplete UTF-8
character. May import engine.messages only.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any

from appliance.engine.messages import Submit

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass
class Choice:
    """The part of a request one slot generates: choice `index` of `request`."""

    request: Submit
    index: int
    prompt_tokens: int
    cached_tokens: int = 0
    sampler: Any = None
    """The runtime's sampler for this choice (`llamacpp.Sampler`; slots.py imports no native)."""
    generated: int = 0
    finish_reason: str | None = None
    in_thinking: bool = False
    thinking_tokens: int = 0
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _held: str = ""
    """Decoded text not sent yet: it may be the start of a stop string."""
    _recent: str = ""
    """The last characters generated, to see `<think>` tags that span tokens."""

    def __post_init__(self) -> None:
        self.in_thinking = self.request.prompt_opens_thinking

    def add_piece(self, piece: bytes) -> str:
        """Take a token's bytes; return the text that can be sent now (may be empty).

        Sets `finish_reason = "stop"` when a stop string appears; the text up to it is
        returned and the stop string itself is not.
        """
        text = self._decoder.decode(piece)
        self._track_thinking(text)
        self._held += text
        stops = self.request.stop
        if not stops:
            out, self._held = self._held, ""
            return out
        # Whatever could start a stop string was held back, so a stop string can only lie
        # wholly inside the held text.
        for stop in stops:
            at = self._held.find(stop)
            if at != -1:
                self.finish_reason = "stop"
                out, self._held = self._held[:at], ""
                return out
        keep = _longest_stop_prefix_suffix(self._held, stops)
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(out) :]
        return out

    def flush(self) -> str:
        """Text still held when generation ends for a reason other than a stop string."""
        out = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return out

    def _track_thinking(self, text: str) -> None:
        # The worker only needs to know whether it is inside a thinking block (for the budget);
        # splitting reasoning from content for the client is the API's job.
        self._recent = (self._recent + text)[-32:]
        opened, closed = self._recent.rfind(THINK_OPEN), self._recent.rfind(THINK_CLOSE)
        if opened != -1 or closed != -1:
            self.in_thinking = opened > closed

    def over_reasoning_budget(self) -> bool:
        budget = self.request.reasoning_budget
        # Under a grammar the forced `</think>` could be a token it rules out (and llama.cpp
        # aborts on those): the grammar bounds the answer's shape there anyway.
        constrained = bool(self.request.grammar or self.request.json_schema)
        return (
            budget is not None
            and not constrained
            and self.in_thinking
            and self.thinking_tokens >= budget
        )


def _longest_stop_prefix_suffix(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that could be the start of a stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


@dataclass
class Slot:
    """A sequence id in the shared KV cache, and what it currently holds."""

    seq: int
    cached: list[int] = field(default_factory=list)
    """Tokens whose KV this sequence holds, in position order."""
    pending: list[int] = field(default_factory=list)
    """Tokens to feed at the next steps (prompt chunks, the last sampled token, forced ones)."""
    choice: Choice | None = None
    last_used: int = 0
    prompt_length: int = 0
    """Prompt tokens of the last request placed here: a new prompt that starts with all of them
    goes on with (or asks again) that conversation."""
    waiting_for_copy: bool = False
    """A sibling choice of an n>1 request: idle until the first choice's prompt is in the KV."""
    drafter: Any = None
    """The choice's prompt-lookup drafter (`speculation.NgramDrafter`), None without one."""
    draft: list[int] = field(default_factory=list)
    """Tokens guessed to follow `pending`, in this step's batch for verification."""
    draft_source: str = "lookup"
    """Who guessed `draft`: `lookup` (prompt lookup) or `model` (the draft model)."""

    @property
    def busy(self) -> bool:
        return self.choice is not None


def common_prefix(a: list[int], b: list[int]) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i
