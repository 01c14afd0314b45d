"""Reading a streamed chat answer (`/v1/chat/completions`, SSE) into small events.

The console's playground sends its chat to the daemon's `/v1` over the admin socket (the same
serving path LAN clients use, without an API key). Standard library only, plus errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The console asks for DeepSeek's field names whatever the box's default is.
REASONING_FORMAT = "deepseek"


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One piece of a streamed answer: text, reasoning text, the finish, or the token counts."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def chat_body(model: str, messages: list[dict[str, str]], max_tokens: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "reasoning_format": REASONING_FORMAT,
    }
    if max_tokens:
        body["max_tokens"] = max_tokens
    return body


def parse_sse_line(line: str) -> ChatEvent | dict[str, Any] | None:
    """A `data:` line as an event; an `{"error": …}` body as that dict; else None."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    chunk = json.loads(data)
    if "error" in chunk:
        return dict(chunk["error"])
    usage = chunk.get("usage") or {}
    content = reasoning = ""
    finish = None
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        content += delta.get("content") or ""
        reasoning += delta.get("reasoning_content") or ""
        finish = choice.get("finish_reason") or finish
    return ChatEvent(
        content=content,
        reasoning=reasoning,
        finish_reason=finish,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )
