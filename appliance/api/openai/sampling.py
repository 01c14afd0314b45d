"""Request fields shared by chat and text completions: sampling, stops, n, structured output.

Pydantic only (the API's protocol layer); `SamplingRequest.sampling_fields()` is where these
fields become the keyword arguments of the engine's `Submit`. Validation messages name the
field, because the app's one validation handler prefixes them with its path (400). Upper
bounds an administrator may change live in `config.limits` and are checked by `limits.py`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | bool = Field(default=True, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`; llama.cpp's `{"type": "json_object", "schema": ...}` too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a `json_schema` object with a `schema`")
        return self

    def schema_text(self) -> str | None:
        """The JSON schema the output must satisfy, as text; None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_schema":
            assert self.json_schema is not None
            schema = self.json_schema.schema_
            return json.dumps({} if schema is True else schema)
        # json_object: any object, as OpenAI promises; or llama.cpp's inline schema.
        return json.dumps(self.schema_ or {"type": "object"})


class SamplingRequest(BaseModel):
    """Fields common to `/v1/chat/completions` and `/v1/completions`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=40, ge=0)
    """0 disables top-k (llama.cpp's convention)."""
    min_p: float = Field(default=0.05, ge=0, le=1)
    repeat_penalty: float = Field(
        default=1.0,
        gt=0,
        le=10,
        validation_alias=AliasChoices("repeat_penalty", "repetition_penalty"),
    )
    """llama.cpp's name; vLLM's `repetition_penalty` is accepted too."""
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    penalty_last_n: int = Field(
        default=64, ge=-1, validation_alias=AliasChoices("penalty_last_n", "repeat_last_n")
    )
    """Tokens the penalties look back over; -1: the whole context (llama.cpp)."""
    stop: str | list[str] | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    n: int = Field(default=1, ge=1)
    response_format: ResponseFormat | None = None
    grammar: str | None = None
    """A GBNF grammar (llama.cpp extension), for callers who write their own."""
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        # OpenAI sends token ids as JSON object keys, i.e. strings.
        for key, bias in (value or {}).items():
            if not key.strip().isdigit():
                raise ValueError(f"keys must be token ids (non-negative integers), got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"bias for token {key} must be between -100 and 100, got {bias}")
        return value

    @model_validator(mode="after")
    def _one_constraint(self) -> SamplingRequest:
        if self.grammar and self.response_format and self.response_format.type != "text":
            raise ValueError("grammar: give either `grammar` or a JSON `response_format`, not both")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling_fields(self) -> dict[str, Any]:
        """`Submit` keyword arguments for everything this base declares."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "penalty_last_n": self.penalty_last_n,
            "stop": self.stop_list(),
            "seed": self.seed,
            "logit_bias": {int(k): float(v) for k, v in (self.logit_bias or {}).items()},
            "n": self.n,
            "grammar": self.grammar or None,
            "json_schema": self.response_format.schema_text() if self.response_format else None,
        }
