"""One choice's output, as the engine streams it: reasoning, answer, tool calls, logprobs.

`ChoiceOutput` keeps the streaming state llama.cpp keeps in `task_result_state`: the reasoning
splitter, the tool-call finder, and logprobs waiting for text to ride on. It turns engine
`Delta`/`Done` messages into `ChoiceEvent`s; `convert.py` turns those into wire JSON, streamed
or not, so both paths split text the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.api.openai.chat_prompt import ToolMode
from appliance.api.openai.reasoning import ReasoningFormat, make_splitter
from appliance.api.openai.tool_deltas import CallDelta, CallDeltas
from appliance.api.openai.tools import ToolCall, ToolCallStream, parse_forced
from appliance.engine.messages import Delta, Done, TokenLogprob


@dataclass
class ChoiceEvent:
    """What a client should be told about one choice now."""

    index: int
    reasoning: str = ""
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    first_call: int = 0
    """Position of `tool_calls[0]` among this choice's calls."""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    call_deltas: list[CallDelta] = field(default_factory=list)
    """Tool calls as they are written: name first, then arguments piece by piece (streams)."""

    @property
    def visible(self) -> bool:
        return bool(self.reasoning or self.content or self.tool_calls or self.call_deltas)


class ChoiceOutput:
    def __init__(
        self,
        index: int,
        *,
        reasoning: ReasoningFormat = ReasoningFormat.DEEPSEEK,
        thinking_opened: bool = False,
        tools: ToolMode = ToolMode.OFF,
    ) -> None:
        self.index = index
        self._splitter = make_splitter(reasoning, thinking_opened=thinking_opened)
        self._tool_mode = tools
        self._finder = ToolCallStream() if tools is ToolMode.PARSE else None
        self._deltas = CallDeltas()
        self._forced_text = ""
        self._pending_logprobs: list[TokenLogprob] = []
        # Totals, for the non-streamed response.
        self.reasoning = ""
        self.content = ""
        self.tool_calls: list[ToolCall] = []
        self.logprobs: list[TokenLogprob] = []
        self.done: Done | None = None
        self.finish_reason: str | None = None

    def feed(self, delta: Delta) -> ChoiceEvent:
        if delta.logprobs:
            self._pending_logprobs += delta.logprobs
            self.logprobs += delta.logprobs
        split = self._splitter.feed(delta.text)
        return self._event(split.reasoning, split.content, final=False)

    def finish(self, done: Done) -> ChoiceEvent:
        self.done = done
        split = self._splitter.finish()
        event = self._event(split.reasoning, split.content, final=True)
        reason = done.finish_reason
        if self.tool_calls and reason == "stop":
            reason = "tool_calls"  # what OpenAI clients wait for before running the tools
        event.finish_reason = self.finish_reason = reason
        return event

    def _event(self, reasoning: str, content: str, *, final: bool) -> ChoiceEvent:
        calls: list[ToolCall] = []
        deltas: list[CallDelta] = []
        if self._tool_mode is ToolMode.FORCED:
            # The grammar makes the whole answer the call(s): read it once it is complete.
            self._forced_text += content
            content = ""
            if final:
                calls = parse_forced(self._forced_text)
                content = "" if calls else self._forced_text
                deltas = [
                    CallDelta(k, call.arguments, id=call.id, name=call.name)
                    for k, call in enumerate(calls)
                ]
        elif self._finder is not None:
            content, calls = self._finder.feed(content)
            deltas = self._deltas.update(self._finder)
            if final:
                more, last = self._finder.finish()
                content, calls = content + more, calls + last
                deltas += self._deltas.update(self._finder, final=True)
        event = ChoiceEvent(self.index, reasoning, content, calls, first_call=len(self.tool_calls),
                            call_deltas=deltas)  # fmt: skip
        self.reasoning += reasoning
        self.content += content
        self.tool_calls += calls
        if event.visible or final:
            event.logprobs, self._pending_logprobs = self._pending_logprobs, []
        return event
