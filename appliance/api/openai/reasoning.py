"""DeepSeek reasoning: split generated text into the `<think>` part and the answer, streaming.

Pure text processing, no I/O and no appliance imports beyond the standard library. The worker
sends plain text deltas (DeepSeek's `<think>`/`</think>` are ordinary added tokens, so they
arrive as text); this module decides which bytes are reasoning and which are the answer, and
which wire field the reasoning goes to (`reasoning_content` for DeepSeek's API and llama.cpp,
`thinking` for Ollama, `reasoning` for vLLM >= 0.11; see shared/reference/deepseek.md 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ReasoningFormat(StrEnum):
    """Where a response puts the model's reasoning."""

    DEEPSEEK = "deepseek"
    """`reasoning_content` (DeepSeek's API, llama.cpp, vLLM before 0.11)."""
    OLLAMA = "ollama"
    """`thinking` (Ollama's chat API field)."""
    VLLM = "vllm"
    """`reasoning` (vLLM >= 0.11, OpenRouter)."""
    NONE = "none"
    """No split: the tags stay in `content`, for clients that parse them themselves."""

    @property
    def field(self) -> str | None:
        return _FIELDS[self]


_FIELDS = {
    ReasoningFormat.DEEPSEEK: "reasoning_content",
    ReasoningFormat.OLLAMA: "thinking",
    ReasoningFormat.VLLM: "reasoning",
    ReasoningFormat.NONE: None,
}

# Request values accepted for `reasoning_format`: the format names, and the field names
# themselves, since that is what people remember from their client's docs.
FORMAT_ALIASES: dict[str, ReasoningFormat] = {
    **{fmt.value: fmt for fmt in ReasoningFormat},
    "reasoning_content": ReasoningFormat.DEEPSEEK,
    "thinking": ReasoningFormat.OLLAMA,
    "reasoning": ReasoningFormat.VLLM,
}


def parse_format(value: str) -> ReasoningFormat:
    """The format a request names; ValueError listing the accepted names otherwise."""
    try:
        return FORMAT_ALIASES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"must be one of {', '.join(sorted(FORMAT_ALIASES))}") from None


def prompt_opens_thinking(prompt: str) -> bool:
    """True when the rendered prompt ends inside an open `<think>` block (R1's template)."""
    return prompt.rstrip().endswith(THINK_OPEN)


@dataclass
class Split:
    """What one piece of generated text contributed to each part."""

    reasoning: str = ""
    content: str = ""

    def __bool__(self) -> bool:
        return bool(self.reasoning or self.content)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ReasoningSplitter:
    """Turns text deltas into (reasoning, content) deltas, whatever way the tags are cut.

    - A `<think>` is recognised only at the very start of the output (after whitespace):
      DeepSeek models open with it, and an answer that *mentions* the tag must stay intact.
    - `thinking_opened`: the prompt already opened the block (R1's template ends with
      `<think>\\n`), so output is reasoning until `</think>`; a repeated `<think>` is dropped.
    - Everything after the first `</think>` is content; later tags are not parsed.
    - Whitespace right after either tag and right before `</think>` is dropped (R1 writes
      `<think>\\n...\\n</think>\\n\\n`), so both parts start and end with text.
    - Text that might be the start of a tag (`</th`) or trailing whitespace inside the
      reasoning is held back until the next delta, or until `finish()`.
    """

    _START, _THINKING, _ANSWER = range(3)

    def __init__(self, *, thinking_opened: bool = False) -> None:
        self._opened = thinking_opened
        self._state = self._START
        self._held = ""
        self._strip_lead = False

    @property
    def in_reasoning(self) -> bool:
        return self._state == self._THINKING

    def feed(self, text: str) -> Split:
        out = Split()
        buf, self._held = self._held + text, ""
        while buf:
            if self._state == self._START:
                buf = self._start(buf)
            elif self._state == self._THINKING:
                buf = self._thinking(buf, out)
            else:
                if self._strip_lead:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    self._strip_lead = False
                out.content += buf
                buf = ""
        return out

    def _start(self, buf: str) -> str:
        stripped = buf.lstrip()
        if not stripped or (len(stripped) < len(THINK_OPEN) and THINK_OPEN.startswith(stripped)):
            self._held = buf  # only whitespace, or maybe "<thi" of "<think>": wait for more
            return ""
        if stripped.startswith(THINK_OPEN):
            self._state, self._strip_lead = self._THINKING, True
            return stripped[len(THINK_OPEN) :]
        if self._opened:
            self._state, self._strip_lead = self._THINKING, True
        else:
            self._state = self._ANSWER  # a plain answer: leave its text exactly as written
        return buf

    def _thinking(self, buf: str, out: Split) -> str:
        if self._strip_lead:
            buf = buf.lstrip()
            if not buf:
                return ""
            self._strip_lead = False
        end = buf.find(THINK_CLOSE)
        if end >= 0:
            out.reasoning += buf[:end].rstrip()
            self._state, self._strip_lead = self._ANSWER, True
            return buf[end + len(THINK_CLOSE) :]
        cut = len(buf) - _partial_suffix(buf, THINK_CLOSE)
        sendable = buf[:cut].rstrip()
        self._held = buf[len(sendable) :]
        out.reasoning += sendable
        return ""

    def finish(self) -> Split:
        """Release what was held back: the output ended, so no tag can complete any more."""
        held, self._held = self._held, ""
        if self._state == self._START:
            if self._opened:
                return Split(reasoning=held.strip())
            return Split(content=held)
        if self._state == self._THINKING:
            return Split(reasoning=held.rstrip())
        return Split()


class PassThrough:
    """The `none` format: every byte goes to content, tags included.

    When the prompt opened the block, the output lacks the `<think>`; it is put back so that
    clients parsing the tags themselves (Open WebUI, LibreChat) see a well-formed block.
    """

    def __init__(self, *, thinking_opened: bool = False) -> None:
        self._prefix = THINK_OPEN + "\n" if thinking_opened else ""
        self.in_reasoning = False

    def feed(self, text: str) -> Split:
        if not text:
            return Split()
        prefix, self._prefix = self._prefix, ""
        return Split(content=prefix + text)

    def finish(self) -> Split:
        prefix, self._prefix = self._prefix, ""
        return Split(content=prefix)


def make_splitter(
    fmt: ReasoningFormat, *, thinking_opened: bool
) -> ReasoningSplitter | PassThrough:
    if fmt == ReasoningFormat.NONE:
        return PassThrough(thinking_opened=thinking_opened)
    return ReasoningSplitter(thinking_opened=thinking_opened)
