"""Pydantic models of the OpenAI chat-completions wire format (requests and responses).

Requests accept unknown fields (clients send many) and the routes log which were ignored;
`ChatCompletionRequest.to_engine_request()` is the one place where the chat API shape becomes
the engine's `Submit`. Shared sampling fields live in `sampling.py`. Never imported by the worker.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from appliance.api.openai.reasoning import ReasoningFormat, parse_format
from appliance.api.openai.sampling import SamplingRequest
from appliance.engine.messages import Submit
from appliance.errors import UsageError


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str | dict[str, Any] = "{}"

    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


class ToolCallIn(BaseModel):
    """A tool call in an assistant message of the history."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        unsupported = {part.type for part in self.content if part.type != "text"}
        if unsupported:
            raise UsageError(
                f"message content of type {', '.join(sorted(unsupported))} is not supported "
                "by this model; send text parts only"
            )
        return "".join(part.text or "" for part in self.content)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0)
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    reasoning_format: str | None = None
    """`deepseek` (reasoning_content), `ollama`/`thinking`, `vllm`/`reasoning`, `none`."""
    reasoning_budget: int | None = Field(default=None, ge=-1)
    """Most tokens of thinking; -1 or absent: no limit, 0: answer without thinking."""
    chat_template_kwargs: dict[str, Any] | None = None
    """Extra variables for the chat template (e.g. `enable_thinking: false`), as in vLLM."""

    @field_validator("reasoning_format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None:
            parse_format(value)
        return value

    @model_validator(mode="after")
    def _tool_choice_matches_tools(self) -> ChatCompletionRequest:
        names = {tool.function.name for tool in self.tools or []}
        choice = self.tool_choice
        if choice == "required" and not names:
            raise ValueError("tool_choice: `required` needs a non-empty `tools` list")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(
                f"tool_choice: function {choice.function.name!r} is not among `tools` "
                f"({', '.join(sorted(names)) or 'none given'})"
            )
        forced = choice == "required" or isinstance(choice, NamedToolChoice)
        if forced and self.response_format is not None and self.response_format.type != "text":
            raise ValueError("tool_choice: cannot force a tool call and a response_format")
        return self

    def reasoning(self, default: ReasoningFormat) -> ReasoningFormat:
        return parse_format(self.reasoning_format) if self.reasoning_format else default

    def thinking_disabled(self) -> bool:
        kwargs = self.chat_template_kwargs or {}
        return kwargs.get("enable_thinking") is False or self.reasoning_budget == 0

    def to_engine_request(
        self,
        request_id: str,
        prompt: str,
        default_max: int,
        *,
        prompt_opens_thinking: bool = False,
        json_schema: str | None = None,
        upstream_body: dict[str, Any] | None = None,
    ) -> Submit:
        """The engine request; `json_schema` overrides response_format (forced tool calls)."""
        fields = self.sampling_fields()
        if json_schema is not None:
            fields["json_schema"] = json_schema
        budget = self.reasoning_budget
        return Submit(
            id=request_id,
            prompt=prompt,
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max,
            logprobs=self.logprobs or self.top_logprobs > 0,
            top_logprobs=self.top_logprobs,
            reasoning_budget=None if budget is None or budget < 0 else budget,
            prompt_opens_thinking=prompt_opens_thinking,
            upstream_body=upstream_body,
            **fields,
        )


# ---------------------------------------------------------------- responses


class _DropNone(BaseModel):
    """Leaves out fields that are None, except those in `_keep` (OpenAI omits unused ones)."""

    _keep: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in self._keep}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class FunctionCallDelta(_DropNone):
    name: str | None = None
    arguments: str = ""


class ToolCallDelta(_DropNone):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class TopLogprobOut(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprobOut):
    top_logprobs: list[TopLogprobOut] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None


class ResponseMessage(_DropNone):
    _keep: ClassVar[frozenset[str]] = frozenset({"content"})
    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning_content: str | None = None
    thinking: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaMessage(_DropNone):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    thinking: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ai-appliance"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
