"""Tool calls in generated text: parse DeepSeek's and Hermes' formats, whole or streaming.

Pure text processing (standard library only). Two output formats are understood, whichever
the model uses:

- DeepSeek (R1/V3 templates, shared/reference/deepseek.md 3.1):
  `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{...}\\n```
  <｜tool▁call▁end｜>...<｜tool▁calls▁end｜>`, and the later V3.1 form
  `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>`.
- Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.

When the request forced a call (`tool_choice` required or named), the worker's grammar makes
the whole output bare JSON instead: `parse_forced` reads that.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

DS_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
DS_CALLS_END = "<｜tool▁calls▁end｜>"
DS_CALL_BEGIN = "<｜tool▁call▁begin｜>"
DS_CALL_END = "<｜tool▁call▁end｜>"
DS_SEP = "<｜tool▁sep｜>"
HERMES_BEGIN = "<tool_call>"
HERMES_END = "</tool_call>"

# Any of these in the answer means "tool calls from here on".
_STARTS = (DS_CALLS_BEGIN, DS_CALL_BEGIN, HERMES_BEGIN)
# One call: its opening marker and its closing one.
_PAIRS = ((DS_CALL_BEGIN, DS_CALL_END), (HERMES_BEGIN, HERMES_END))
# Framing left between calls; anything else there is text the model wrote.
_FRAMING = (DS_CALLS_BEGIN, DS_CALLS_END, "<｜end▁of▁sentence｜>")


@dataclass
class ToolCall:
    """One parsed call; `arguments` is JSON text, as OpenAI's wire format carries it."""

    name: str
    arguments: str
    id: str = field(default_factory=lambda: new_call_id())
    begin: str = field(default="", repr=False, compare=False)
    """The marker that opened the call in the output (for streaming its arguments)."""
    segment: str = field(default="", repr=False, compare=False)
    """The output text between the call's markers, as written."""


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _arguments_text(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value  # not JSON: hand it on as written; the client decides
    return json.dumps(value, ensure_ascii=False)


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.partition("\n")[2] if "\n" in text else text[3:]
        text = text.removesuffix("```").rstrip()
    return text


def parse_deepseek_call(segment: str) -> ToolCall | None:
    """The text between `<｜tool▁call▁begin｜>` and `<｜tool▁call▁end｜>`."""
    left, sep, right = segment.partition(DS_SEP)
    if not sep:
        return None
    left = left.strip()
    if left in ("function", "") and "\n" in right.strip():
        name, _, arguments = right.strip().partition("\n")  # R1: type<sep>name\n```json...
    else:
        name, arguments = left, right  # V3.1: name<sep>{...}
    name = name.strip()
    if not name:
        return None
    return ToolCall(name=name, arguments=_arguments_text(_strip_fence(arguments) or "{}"))


def parse_json_call(text: str) -> ToolCall | None:
    """A JSON object `{"name": ..., "arguments" | "parameters": ...}` (Hermes, forced calls)."""
    try:
        data = json.loads(_strip_fence(text))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    return ToolCall(name=data["name"], arguments=_arguments_text(arguments))


def _parse_segment(begin: str, segment: str) -> ToolCall | None:
    return parse_deepseek_call(segment) if begin == DS_CALL_BEGIN else parse_json_call(segment)


def parse_forced(text: str) -> list[ToolCall]:
    """Calls from a grammar-forced output: one object, or an array of objects."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    calls = [parse_json_call(json.dumps(item)) for item in items if isinstance(item, dict)]
    return [call for call in calls if call is not None]


def _partial_start(text: str) -> int:
    """Length of the longest suffix of `text` that could begin a tool-call marker."""
    best = 0
    for marker in _STARTS:
        for size in range(min(len(text), len(marker) - 1), best, -1):
            if marker.startswith(text[-size:]):
                best = size
                break
    return best


class ToolCallStream:
    """Finds tool calls in streamed answer text: content passes, each finished call is emitted.

    Before the first marker, text is content (a suffix that may begin a marker is held back).
    From the first marker on, text is buffered and every call is emitted once its closing
    marker arrives; `finish()` parses an unclosed last call (generation stopped at EOS before
    the end marker) and returns unparseable leftovers as content, so nothing is lost.
    """

    def __init__(self) -> None:
        self._held = ""
        self._region: str | None = None
        self._leftover = ""
        self.calls: list[ToolCall] = []
        self.closed: list[ToolCall | None] = []
        """Every call closed by the last feed/finish, in order; None for one that did not parse."""

    def open_call(self) -> tuple[str, str] | None:
        """The call being written now: its opening marker and its text so far."""
        region = self._region or ""
        opened = [(region.find(b), b, e) for b, e in _PAIRS if b in region]
        if not opened:
            return None
        at, begin, end = min(opened)
        segment = region[at + len(begin) :]
        for size in range(min(len(segment), len(end) - 1), 0, -1):
            if end.startswith(segment[-size:]):
                return begin, segment[:-size]  # the end marker is being written
        return begin, segment

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.closed = []
        if self._region is None:
            buf = self._held + text
            starts = [i for i in (buf.find(m) for m in _STARTS) if i >= 0]
            if not starts:
                keep = _partial_start(buf)
                self._held = buf[len(buf) - keep :] if keep else ""
                return buf[: len(buf) - keep], []
            first = min(starts)
            self._held, self._region = "", buf[first:]
            content = buf[:first]
        else:
            self._region += text
            content = ""
        return content, self._take_calls(final=False)

    def _take_calls(self, *, final: bool) -> list[ToolCall]:
        found: list[ToolCall] = []
        region = self._region or ""
        while True:
            opened = [(region.find(b), b, e) for b, e in _PAIRS if b in region]
            if not opened:
                break
            at, begin, end = min(opened)
            close = region.find(end, at + len(begin))
            if close < 0 and not final:
                break  # the call is still being written
            stop = close if close >= 0 else len(region)
            segment = region[at + len(begin) : stop]
            call = _parse_segment(begin, segment)
            if call is not None:
                call.begin, call.segment = begin, segment
            self.closed.append(call)
            after = stop + len(end) if close >= 0 else stop
            if call is None:
                self._leftover += region[:after]  # not a call after all: it is text
            else:
                self._leftover += region[:at]
                found.append(call)
            region = region[after:]
        self._region = region
        self.calls += found
        return found

    def finish(self) -> tuple[str, list[ToolCall]]:
        self.closed = []
        if self._region is None:
            held, self._held = self._held, ""
            return held, []
        calls = self._take_calls(final=True)
        rest, self._leftover, self._region = self._leftover + (self._region or ""), "", ""
        for marker in _FRAMING:
            rest = rest.replace(marker, "")
        return rest.strip(), calls
