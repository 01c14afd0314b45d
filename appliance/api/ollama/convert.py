"""Ollama requests → the OpenAI chat request our prompt builder takes; results → Ollama JSON.

Ollama's chat and generate calls go down the same path as `/v1/chat/completions`: the request
becomes a `ChatCompletionRequest` (messages, tools, sampling, output format, thinking), so the
chat template, tool prompting, grammar and reasoning split are the ones the OpenAI API uses.
Answers are built as dicts, leaving out empty fields as Ollama does. Errors are Ollama's
`{"error": "message"}`. Imports the OpenAI protocol layer and engine messages only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.api.ollama.protocol import ChatRequest, GenerateRequest, Message, Options
from appliance.api.openai.choices import ChoiceEvent
from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.api.openai.reasoning import ReasoningFormat
from appliance.api.openai.tools import ToolCall
from appliance.engine.messages import Done, TokenLogprob
from appliance.errors import ApplianceError, UsageError
from appliance.records import LoadedModel, ModelInfo

OLLAMA_API_VERSION = "0.12.6"
"""The Ollama release whose API this one follows; clients compare it to enable features."""

_OPTION_FIELDS = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "penalty_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
}


def timestamp(epoch: float | None = None) -> str:
    """RFC 3339 in UTC with a `Z`, as Ollama writes `created_at` and `modified_at`."""
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.isoformat().replace("+00:00", "Z")


def sampling(options: Options | None) -> dict[str, Any]:
    """`ChatCompletionRequest` fields from Ollama's `options` (only those that were set)."""
    if options is None:
        return {}
    fields: dict[str, Any] = {}
    for ours, theirs in _OPTION_FIELDS.items():
        value = getattr(options, ours)
        if value is not None:
            fields[theirs] = value
    if options.num_predict is not None and options.num_predict > 0:
        fields["max_tokens"] = options.num_predict
    return fields


def _check_images(images: list[str] | None) -> None:
    if images:
        raise UsageError("images are not supported by the models on this appliance; send text")


def _message(message: Message) -> dict[str, Any]:
    _check_images(message.images)
    role = message.role
    if role not in ("system", "user", "assistant", "tool"):
        raise UsageError(f"messages: unknown role {role!r}; use system, user, assistant or tool")
    item: dict[str, Any] = {"role": role, "content": message.content or ""}
    if role == "assistant" and message.tool_calls:
        item["tool_calls"] = [
            {"type": "function", "function": {"name": call.function.name,
                                              "arguments": call.function.arguments}}
            for call in message.tool_calls
        ]  # fmt: skip
    if role == "tool" and message.tool_name:
        item["name"] = message.tool_name
    return item


def _thinking_fields(think: bool | str | None) -> dict[str, Any]:
    if think is False:
        return {"chat_template_kwargs": {"enable_thinking": False}, "reasoning_budget": 0}
    return {}


def chat_request(body: ChatRequest) -> ChatCompletionRequest:
    """The OpenAI-shaped request that `build_prompt` and `to_engine_request` understand."""
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": [_message(m) for m in body.messages],
        **sampling(body.options),
        **_thinking_fields(body.think),
        "logprobs": body.logprobs,
        "top_logprobs": body.top_logprobs,
    }
    if body.tools:
        fields["tools"] = body.tools
    schema = body.schema_text()
    if schema is not None:
        fields["response_format"] = {"type": "json_object", "schema": json.loads(schema)}
    return ChatCompletionRequest.model_validate(fields)


def generate_request(body: GenerateRequest) -> ChatCompletionRequest:
    """`/api/generate` as a one-turn chat (`system`, then the prompt as the user's turn)."""
    _check_images(body.images)
    if body.suffix:
        raise UsageError("suffix (fill-in-the-middle) is not supported by this server")
    if body.template:
        raise UsageError(
            "template overrides are not supported per request; the administrator sets a "
            "model's chat template (`appliance models template`)"
        )
    if body.context:
        raise UsageError(
            "context (token ids of an earlier answer) is not supported; send the "
            "conversation to /api/chat instead"
        )
    messages = [Message(role="system", content=body.system)] if body.system else []
    messages.append(Message(role="user", content=body.prompt))
    chat = ChatRequest.model_validate(
        {**body.model_dump(exclude={"prompt", "system", "suffix", "template", "context", "raw",
                                    "images"}),
         "messages": [m.model_dump() for m in messages]}
    )  # fmt: skip
    return chat_request(chat)


def reasoning_format(think: bool | str | None, key_format: str | None) -> ReasoningFormat:
    """Ollama's answers carry reasoning in `thinking`; a key set to `none` keeps the tags in
    the text unless the request asks to think."""
    if think is None and key_format == ReasoningFormat.NONE.value:
        return ReasoningFormat.NONE
    return ReasoningFormat.OLLAMA


@dataclass
class Timings:
    """Nanosecond durations of Ollama's final chunk, measured on the API side."""

    started: float = field(default_factory=time.perf_counter)
    loaded: float | None = None
    first_token: float | None = None

    def mark_loaded(self) -> None:
        self.loaded = time.perf_counter()

    def mark_token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def fields(self, done: Done | None) -> dict[str, int]:
        end = time.perf_counter()
        loaded = self.loaded or self.started
        first = self.first_token or end

        def ns(seconds: float) -> int:
            return max(0, int(seconds * 1e9))

        stats = {
            "total_duration": ns(end - self.started),
            "load_duration": ns(loaded - self.started),
        }
        if done is not None:
            stats |= {
                "prompt_eval_count": done.prompt_tokens,
                "prompt_eval_duration": ns(first - loaded),
                "eval_count": done.completion_tokens,
                "eval_duration": ns(end - first),
            }
        return stats


def tool_calls_out(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Ollama's calls carry arguments as an object, not as JSON text."""
    out = []
    for call in calls:
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            arguments = {}
        if not isinstance(arguments, dict):
            arguments = {"value": arguments}
        out.append({"function": {"name": call.name, "arguments": arguments}})
    return out


def logprobs_out(items: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [
        {
            "token": item.token,
            "logprob": item.logprob,
            "top_logprobs": [{"token": t.token, "logprob": t.logprob} for t in item.top],
        }
        for item in items
    ]


def _reasoning_text(event: ChoiceEvent, fmt: ReasoningFormat) -> str:
    return event.reasoning if fmt is not ReasoningFormat.NONE else ""


def chat_chunk(model: str, event: ChoiceEvent, fmt: ReasoningFormat, *, logprobs: bool) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": event.content}
    thinking = _reasoning_text(event, fmt)
    if thinking:
        message["thinking"] = thinking
    if event.tool_calls:
        message["tool_calls"] = tool_calls_out(event.tool_calls)
    chunk: dict[str, Any] = {
        "model": model, "created_at": timestamp(), "message": message, "done": False,
    }  # fmt: skip
    if logprobs and event.logprobs:
        chunk["logprobs"] = logprobs_out(event.logprobs)
    return chunk


def generate_chunk(model: str, event: ChoiceEvent, fmt: ReasoningFormat, *, logprobs: bool) -> dict:
    chunk: dict[str, Any] = {
        "model": model, "created_at": timestamp(), "response": event.content, "done": False,
    }  # fmt: skip
    thinking = _reasoning_text(event, fmt)
    if thinking:
        chunk["thinking"] = thinking
    if logprobs and event.logprobs:
        chunk["logprobs"] = logprobs_out(event.logprobs)
    return chunk


def final_fields(done: Done | None, reason: str, timings: Timings) -> dict[str, Any]:
    return {"done": True, "done_reason": reason, **timings.fields(done)}


# ---------------------------------------------------------------- model listings


def parameter_size(count: int | None) -> str:
    """Ollama's `parameter_size`: `135M`, `1.5B`, `671B`."""
    if not count:
        return ""
    for limit, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= limit:
            value = count / limit
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return text + unit
    return str(count)


def details(info: ModelInfo) -> dict[str, Any]:
    family = info.architecture or "unknown"
    return {
        "parent_model": "",
        "format": info.format,
        "family": family,
        "families": [family],
        "parameter_size": parameter_size(info.parameter_count),
        "quantization_level": info.quantization,
    }


def tag(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "model": info.name,
        "modified_at": timestamp(info.imported_at),
        "size": info.size_bytes,
        "digest": info.sha256,
        "details": details(info),
    }


FOREVER = "2318-08-25T00:00:00Z"
"""What Ollama shows as `expires_at` for a model kept loaded forever."""


def running(info: ModelInfo, loaded: LoadedModel, expires_at: float | None) -> dict[str, Any]:
    on_device = loaded.backend != "CPU"
    return {
        "name": info.name,
        "model": info.name,
        "size": info.size_bytes,
        "digest": info.sha256,
        "details": details(info),
        "expires_at": FOREVER if expires_at is None else timestamp(expires_at),
        "size_vram": info.size_bytes if on_device else 0,
        "context_length": loaded.context_length or 0,
    }


def capabilities(info: ModelInfo) -> list[str]:
    template = info.chat_template or ""
    found = ["completion"]
    if "tools" in template or "tool_calls" in template:
        found.append("tools")
    if "<think>" in template or "<think>" in info.special_tokens:
        found.append("thinking")
    return found


def show(info: ModelInfo, loaded: LoadedModel | None) -> dict[str, Any]:
    arch = info.architecture or "unknown"
    model_info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": info.parameter_count or 0,
        "general.file_type": info.quantization,
    }
    context = info.context_length or (loaded.context_length if loaded else None)
    if context:
        model_info[f"{arch}.context_length"] = context
    return {
        "license": "",
        "modelfile": f"# {info.name}: served by the AI appliance\nFROM {info.name}\n",
        "parameters": "",
        "template": info.chat_template or "",
        "details": details(info),
        "model_info": model_info,
        "capabilities": capabilities(info),
        "modified_at": timestamp(info.imported_at),
    }


def error_body(error: ApplianceError) -> dict[str, object]:
    """Ollama's error shape: `{"error": "message"}` (its clients read nothing else)."""
    return {"error": error.message}


def ndjson(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n"
