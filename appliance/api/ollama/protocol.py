"""Pydantic models of Ollama's wire format (`/api/chat`, `/api/generate`, `/api/embed`...).

Requests accept unknown fields (Ollama clients send many; the routes log which were ignored);
responses are built as plain dicts in `convert.py`, because Ollama leaves fields out rather
than sending nulls. What the engine needs is taken from these models in `convert.py`, never here.
Never imported by the worker.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Options(BaseModel):
    """The sampling subset of Ollama's `options` we honour; the rest is accepted and ignored
    (`num_ctx`, `num_gpu`, `num_thread`... are the administrator's, set in the config)."""

    model_config = ConfigDict(extra="allow")
    num_predict: int | None = None
    """Most tokens to generate; -1 (no limit) and -2 (fill the context) use the box's cap."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0, le=10)
    repeat_last_n: int | None = Field(default=None, ge=-1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: list[str] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: object) -> object:
        # A single string is a list of one; the count is bounded with every other field by
        # config.limits (api/openai/limits.py), on the ChatCompletionRequest it becomes.
        return [value] if isinstance(value, str) else value


_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: float | str | None) -> float | None:
    """Ollama's `keep_alive` in seconds: a number of seconds or a Go duration (`5m`, `1h30m`);
    negative means forever, 0 unload now; None when absent. ValueError when unreadable."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected seconds or a duration such as 5m or 1h30m, got {value!r}")
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * sum(abs(float(n)) * _UNIT_S[u] for n, u in parts)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)


class _GenerateBase(_Request):
    stream: bool = True
    """Ollama streams unless told not to."""
    format: str | dict[str, Any] | None = None
    """`"json"` for any JSON value, or a JSON schema the output must satisfy."""
    options: Options | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None
    """True (or `high`/`medium`/`low`): reasoning goes to `thinking`; False: no thinking."""
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in ("", "json"):
            raise ValueError('must be "json" or a JSON schema object')
        return value

    @field_validator("keep_alive")
    @classmethod
    def _readable_keep_alive(cls, value: float | str | None) -> float | str | None:
        parse_keep_alive(value)
        return value

    @field_validator("think")
    @classmethod
    def _known_think(cls, value: bool | str | None) -> bool | str | None:
        if isinstance(value, str) and value not in ("high", "medium", "low"):
            raise ValueError("must be true, false, or one of high, medium, low")
        return value

    def keep_alive_s(self) -> float | None:
        return parse_keep_alive(self.keep_alive)

    def schema_text(self) -> str | None:
        """The JSON schema the output must satisfy, as text; None for free text."""
        if not self.format:
            return None
        if self.format == "json":
            # Ollama's "json" is any JSON value in practice an object; an object is what
            # every client that asks for it parses.
            return json.dumps({"type": "object"})
        return json.dumps(self.format)


class ToolFunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    function: ToolFunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None


class ChatRequest(_GenerateBase):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(_GenerateBase):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class EmbedRequest(_Request):
    input: str | list[str]
    truncate: bool = True
    options: Options | None = None
    keep_alive: float | str | None = None
    dimensions: int | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingsRequest(_Request):
    """The older single-text `/api/embeddings` (`prompt` → `embedding`)."""

    prompt: str
    options: Options | None = None
    keep_alive: float | str | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None
    """The older clients' spelling of `model`."""
    verbose: bool = False

    def model_name(self) -> str:
        return self.model or self.name or ""
