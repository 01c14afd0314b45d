"""Between our engine messages and an upstream's OpenAI wire format, both ways.

Requests: a chat request goes upstream as the client sent it (`Submit.upstream_body`, only
the fields the client set), with the upstream's model id, streaming on, and our answer-length
cap when the client gave none; a text completion is built from the `Submit`.

Answers: the upstream's SSE chunks become `Delta`/`Done` messages, so the API's reasoning
split, tool-call parsing, metrics and audit treat them like a local worker's. Reasoning that
arrives in a field (`reasoning_content` from DeepSeek's API, llama.cpp and older vLLM;
`reasoning` from vLLM >= 0.11; `thinking`) is re-wrapped in `<think>…</think>`, and structured
tool calls are written as Hermes `<tool_call>` text: the API turns both back into whatever
format the caller asked for (the normalisation `reasoning_content` ↔ `reasoning`).
Pure functions; may import engine.messages and the standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from appliance.engine.messages import Delta, Done, Submit

REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
_OURS_ONLY = {"model", "stream", "stream_options", "reasoning_format"}
"""Request fields that mean something to the appliance, not to the upstream."""
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


def chat_body(submit: Submit, upstream_model: str) -> dict[str, Any]:
    body = {k: v for k, v in (submit.upstream_body or {}).items() if k not in _OURS_ONLY}
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = submit.max_tokens
    return {**body, "model": upstream_model, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip


def completion_body(submit: Submit, upstream_model: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": upstream_model,
        "prompt": submit.prompt,
        "max_tokens": submit.max_tokens,
        "temperature": submit.temperature,
        "top_p": submit.top_p,
        "n": submit.n,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if submit.stop:
        body["stop"] = submit.stop
    if submit.seed is not None:
        body["seed"] = submit.seed
    if submit.presence_penalty:
        body["presence_penalty"] = submit.presence_penalty
    if submit.frequency_penalty:
        body["frequency_penalty"] = submit.frequency_penalty
    return body


@dataclass
class _Call:
    name: str = ""
    arguments: str = ""


@dataclass
class _Choice:
    in_reasoning: bool = False
    wrote: bool = False
    pieces: int = 0
    finish: str | None = None
    calls: dict[int, _Call] = field(default_factory=dict)


class StreamError(Exception):
    """The upstream sent something that is not an OpenAI stream (or an error inside it)."""


class AnswerReader:
    """Turns one upstream SSE stream (chat or text completion) into Delta and Done messages."""

    def __init__(self, request_id: str, n: int) -> None:
        self.id = request_id
        self.n = max(1, n)
        self.choices = [_Choice() for _ in range(self.n)]
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finished = False
        """The upstream said `[DONE]`: the answer is complete."""

    def line(self, text: str) -> list[Delta]:
        """The messages one line of the stream carries (SSE comments and blanks carry none)."""
        text = text.strip()
        if not text.startswith("data:"):
            return []
        payload = text[5:].strip()
        if payload == "[DONE]":
            self.finished = True
            return []
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise StreamError(f"not JSON: {payload[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamError(f"not a JSON object: {payload[:200]!r}")
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise StreamError(str(message))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
        out: list[Delta] = []
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            if not isinstance(index, int) or not 0 <= index < self.n:
                raise StreamError(f"answer for choice {index!r} of {self.n}")
            state = self.choices[index]
            text_out = self._text(state, choice)
            if text_out:
                state.pieces += 1
                out.append(Delta(self.id, text_out, index=index))
            if choice.get("finish_reason"):
                state.finish = _FINISH.get(choice["finish_reason"], "stop")
        return out

    def _text(self, state: _Choice, choice: dict[str, Any]) -> str:
        if "text" in choice:  # a text completion
            return choice.get("text") or ""
        delta = choice.get("delta") or {}
        text = ""
        reasoning = next((delta[k] for k in REASONING_FIELDS if delta.get(k)), "")
        if reasoning:
            if not state.in_reasoning and not state.wrote:
                text += "<think>"
                state.in_reasoning = True
            if state.in_reasoning:  # reasoning after the answer began is kept as answer text
                text += reasoning
        content = delta.get("content") or ""
        if content:
            if state.in_reasoning:
                text += "</think>"
                state.in_reasoning = False
            text += content
        for call in delta.get("tool_calls") or []:
            slot = state.calls.setdefault(call.get("index", len(state.calls)), _Call())
            function = call.get("function") or {}
            slot.name += function.get("name") or ""
            slot.arguments += function.get("arguments") or ""
        state.wrote |= bool(text)
        return text

    def finish(self) -> list[Delta | Done]:
        """The closing messages, once the stream ended with `[DONE]`."""
        out: list[Delta | Done] = []
        for index, state in enumerate(self.choices):
            tail = "</think>" if state.in_reasoning else ""
            for call in state.calls.values():
                arguments = _json_or_text(call.arguments)
                tail += f"<tool_call>{json.dumps({'name': call.name, 'arguments': arguments})}"
                tail += "</tool_call>"
            if tail:
                out.append(Delta(self.id, tail, tokens=0, index=index))
        for index, state in enumerate(self.choices):
            first = index == 0
            completion = state.pieces
            if self.completion_tokens is not None and self.n == 1:
                completion = self.completion_tokens
            out.append(
                Done(
                    self.id,
                    state.finish or "stop",
                    prompt_tokens=(self.prompt_tokens or 0) if first else 0,
                    completion_tokens=completion,
                    index=index,
                    last=index == self.n - 1,
                )
            )
        return out


def _json_or_text(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments


def error_message(body: bytes) -> str:
    """The message inside an upstream's error answer (OpenAI, FastAPI or plain text)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300] or "no details"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:300]
    return text[:300]
