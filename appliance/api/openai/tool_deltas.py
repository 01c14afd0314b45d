"""Tool-call arguments streamed while the model writes them (OpenAI's `delta.tool_calls`).

Pure text processing beside `tools.py`: `CallDeltas` watches a `ToolCallStream` and, as a call
is written, emits first its id and name (once the name is complete), then each new piece of
its arguments text. What is sent is the arguments as the model writes them, so the pieces
join to valid JSON without waiting for the end; text that might still turn out to be framing
(a closing fence, the object's last brace, trailing spaces) is held back until it is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.api.openai.tools import (
    DS_CALL_BEGIN,
    DS_SEP,
    HERMES_BEGIN,
    ToolCall,
    ToolCallStream,
    new_call_id,
)

# `{"name": "NAME", "arguments": ` (or "parameters"), as Hermes/Qwen models write calls.
_HERMES_HEAD = re.compile(
    r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)+)"\s*,\s*"(?:arguments|parameters)"\s*:\s*'
)


@dataclass
class CallDelta:
    """One `tool_calls` delta: the first carries id and name, later ones argument text."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


def _fenced_body(text: str, *, final: bool) -> str | None:
    """The JSON inside an optional ```json fence; None while the fence's first line is open."""
    text = text.lstrip()
    if not final and text and "```".startswith(text):
        return None  # maybe the start of a fence
    if text.startswith("```"):
        if "\n" not in text:
            return None if not final else ""
        text = text.partition("\n")[2]
    text = text.split("```", 1)[0]
    return text if final else text.rstrip().rstrip("`")  # a closing fence may be starting


def streamable_arguments(begin: str, segment: str, *, final: bool) -> tuple[str, str] | None:
    """(name, arguments text safe to send) of a call written so far; None while the name is
    incomplete or the arguments cannot be streamed as written (a JSON string, odd order)."""
    if begin == DS_CALL_BEGIN:
        left, sep, right = segment.partition(DS_SEP)
        if not sep:
            return None
        if left.strip() in ("function", ""):  # R1: function<sep>NAME\n```json\n{...}\n```
            name, newline, body = right.lstrip().partition("\n")
            if not newline and not final:
                return None
            arguments = _fenced_body(body, final=final)
        else:  # V3.1: NAME<sep>{...}
            name, arguments = left, _fenced_body(right, final=final)
        if arguments is None or not name.strip():
            return None
        return name.strip(), arguments.strip()
    if begin == HERMES_BEGIN:
        head = _HERMES_HEAD.match(segment)
        if head is None:
            return None
        arguments = segment[head.end() :].rstrip()
        if not arguments.startswith(("{", "[")) and arguments:
            return None
        # The last brace may close the call object rather than the arguments: hold it back.
        if arguments.endswith("}"):
            arguments = arguments[:-1].rstrip()
        return head.group(1), arguments
    return None


@dataclass
class _Open:
    id: str
    index: int
    sent: str = ""


class CallDeltas:
    """Turns a `ToolCallStream`'s progress into `CallDelta`s after every feed."""

    def __init__(self) -> None:
        self._count = 0
        self._open: _Open | None = None

    def update(self, stream: ToolCallStream, *, final: bool = False) -> list[CallDelta]:
        out = [delta for call in stream.closed for delta in self._closed(call)]
        current = None if final else stream.open_call()
        if current is not None:
            out += self._progress(*current)
        return out

    def _closed(self, call: ToolCall | None) -> list[CallDelta]:
        opened, self._open = self._open, None
        index = opened.index if opened else self._count
        if opened is None:
            if call is None:
                return []
            self._count += 1
        if call is None:
            return []  # the started call turned out not to be one; its index stays used
        streamed = streamable_arguments(call.begin, call.segment, final=True)
        if opened is None:
            arguments = streamed[1] if streamed else call.arguments
            return [CallDelta(index, arguments, id=call.id, name=call.name)]
        call.id = opened.id  # the id the client already has
        if streamed and streamed[1].startswith(opened.sent):
            rest = streamed[1][len(opened.sent) :]
            return [CallDelta(index, rest)] if rest else []
        if not opened.sent:  # arguments written in a form not streamed (a JSON string)
            return [CallDelta(index, call.arguments)]
        return []

    def _progress(self, begin: str, segment: str) -> list[CallDelta]:
        found = streamable_arguments(begin, segment, final=False)
        if found is None:
            return []
        name, arguments = found
        out = []
        if self._open is None:
            self._open = _Open(new_call_id(), self._count)
            self._count += 1
            out.append(CallDelta(self._open.index, "", id=self._open.id, name=name))
        sent = self._open.sent
        if len(arguments) > len(sent) and arguments.startswith(sent):
            out.append(CallDelta(self._open.index, arguments[len(sent) :]))
            self._open.sent = arguments
        return out
