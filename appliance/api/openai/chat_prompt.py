"""A chat request → the prompt text: history, tools and thinking, through the model's template.

Owns what the model is *shown*: how tool definitions, earlier tool calls and tool results
reach a template that may or may not know about tools, whether the thinking block is left
open, and the JSON schema that forces a call when `tool_choice` demands one. The inverse
(reading calls back out of the output) is `tools.py`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from appliance.api.openai.protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice
from appliance.api.openai.reasoning import THINK_CLOSE, prompt_opens_thinking
from appliance.api.openai.tools import (
    DS_CALL_BEGIN,
    DS_CALL_END,
    DS_CALLS_BEGIN,
    DS_CALLS_END,
    DS_SEP,
    HERMES_BEGIN,
    HERMES_END,
)
from appliance.chat_template import FALLBACK_TEMPLATE, render_chat
from appliance.records import ModelFormat, ModelInfo

# Names render_chat sets itself; a request's chat_template_kwargs must not replace them.
_RESERVED = frozenset({"messages", "bos_token", "eos_token", "add_generation_prompt", "tools"})


class ToolMode(Enum):
    OFF = "off"
    """No tools in play: the output is text."""
    PARSE = "parse"
    """`tool_choice` auto: the model may call; calls are parsed out of its text."""
    FORCED = "forced"
    """`required` or a named function: a JSON schema makes the whole output the call(s)."""


@dataclass(frozen=True)
class TemplateAbilities:
    tools: bool
    """The template renders a `tools` variable itself (Hugging Face tool-use templates)."""
    tool_calls: bool
    """The template renders assistant `tool_calls` and `tool` messages."""
    deepseek: bool
    """DeepSeek's own framing (`<｜tool▁calls▁begin｜>`): its calls need `content` None."""

    @classmethod
    def of(cls, template: str) -> TemplateAbilities:
        return cls(
            tools=re.search(r"\btools\b", template) is not None,
            tool_calls="tool_calls" in template,
            deepseek=DS_CALLS_BEGIN in template,
        )


@dataclass(frozen=True)
class ChatPrompt:
    text: str
    opens_thinking: bool
    """The prompt ends inside `<think>`: output is reasoning until `</think>`."""
    tool_mode: ToolMode
    forced_schema: str | None = None
    upstream_body: dict[str, Any] | None = None
    """For an upstream model: the request as the client sent it, forwarded unrendered."""


def build_prompt(body: ChatCompletionRequest, info: ModelInfo) -> ChatPrompt:
    if info.format == ModelFormat.UPSTREAM:
        return upstream_prompt(body)
    template = info.chat_template or FALLBACK_TEMPLATE
    able = TemplateAbilities.of(template)
    mode = tool_mode(body)
    messages = template_messages(body.messages, able)
    extra = {k: v for k, v in (body.chat_template_kwargs or {}).items() if k not in _RESERVED}
    if mode is not ToolMode.OFF:
        tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []]
        if able.tools:
            extra["tools"] = tools
        else:
            _add_system_text(messages, tool_instructions(tools, able.deepseek, mode))
    text = render_chat(
        template, messages, bos_token=info.bos_token, eos_token=info.eos_token, **extra
    )
    opens = prompt_opens_thinking(text)
    # Constrained output cannot go through a free-text thinking block first (the grammar
    # applies from the first token; vLLM #12955), and a request may switch thinking off:
    # close the block in the prompt, as R1 itself does when it skips thinking.
    constrained = (
        mode is ToolMode.FORCED
        or body.grammar is not None
        or (body.response_format is not None and body.response_format.type != "text")
    )
    if opens and (constrained or body.thinking_disabled()):
        text = text.rstrip("\n") + "\n\n" + THINK_CLOSE + "\n\n"
        opens = False
    schema = forced_schema(body) if mode is ToolMode.FORCED else None
    return ChatPrompt(text=text, opens_thinking=opens, tool_mode=mode, forced_schema=schema)


def upstream_prompt(body: ChatCompletionRequest) -> ChatPrompt:
    """An upstream renders its own template: it gets the messages, tools and sampling fields
    the client set. The text is a plain transcript, kept only for the audit log's
    `store_prompts`; any tool calls come back as structured calls (`upstream/wire.py`), which
    the output parser reads like a local model's."""
    transcript = "\n".join(f"{m.role}: {_plain(m)}" for m in body.messages)
    mode = ToolMode.OFF if tool_mode(body) is ToolMode.OFF else ToolMode.PARSE
    sent = body.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    return ChatPrompt(text=transcript, opens_thinking=False, tool_mode=mode, upstream_body=sent)


def _plain(message: ChatMessage) -> str:
    """A message's text for the transcript; other parts (images) as `[type]`: the upstream
    may well accept them, so they are not refused here."""
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    return " ".join(part.text or f"[{part.type}]" for part in message.content)


def tool_mode(body: ChatCompletionRequest) -> ToolMode:
    if not body.tools or body.tool_choice == "none":
        return ToolMode.OFF
    if body.tool_choice == "required" or isinstance(body.tool_choice, NamedToolChoice):
        return ToolMode.FORCED
    return ToolMode.PARSE


def template_messages(messages: list[ChatMessage], able: TemplateAbilities) -> list[dict[str, Any]]:
    """The history as templates expect it; tool turns spelled out for templates without them."""
    out: list[dict[str, Any]] = []
    for message in messages:
        # OpenAI's newer `developer` role is a system message under another name.
        role = "system" if message.role == "developer" else message.role
        item: dict[str, Any] = {"role": role, "content": message.text()}
        if role == "assistant" and message.tool_calls:
            calls = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": _args(call, able)},
                }
                for call in message.tool_calls
            ]
            if able.tool_calls:
                item["tool_calls"] = calls
                if able.deepseek:
                    item["content"] = None  # DeepSeek's template renders calls only then
            else:
                item["content"] = item["content"] + "".join(_hermes_call(c) for c in calls)
        elif role == "tool":
            if able.tool_calls:
                item.update(tool_call_id=message.tool_call_id, name=message.name)
            else:
                # Qwen's template does the same for tool results: a user turn, tagged.
                item = {"role": "user", "content": f"<tool_response>\n{item['content']}\n"
                        "</tool_response>"}  # fmt: skip
        out.append(item)
    return out


def _args(call: Any, able: TemplateAbilities) -> Any:
    text = call.function.arguments_text()
    if able.deepseek:
        return text  # DeepSeek's template concatenates the JSON text
    try:
        return json.loads(text)  # Hugging Face templates apply `tojson` to a mapping
    except ValueError:
        return text


def _hermes_call(call: dict[str, Any]) -> str:
    function = call["function"]
    arguments = function["arguments"]
    body = {"name": function["name"], "arguments": arguments}
    return f"\n{HERMES_BEGIN}\n{json.dumps(body, ensure_ascii=False)}\n{HERMES_END}"


def _add_system_text(messages: list[dict[str, Any]], text: str) -> None:
    if messages and messages[0]["role"] == "system":
        first = messages[0]["content"]
        messages[0] = {**messages[0], "content": f"{first}\n\n{text}" if first else text}
    else:
        messages.insert(0, {"role": "system", "content": text})


def tool_instructions(tools: list[dict[str, Any]], deepseek: bool, mode: ToolMode) -> str:
    """The tool list and call format, for templates that do not render `tools` themselves."""
    listing = "\n".join(json.dumps(tool["function"], ensure_ascii=False) for tool in tools)
    head = f"You can call these functions (JSON signatures):\n<tools>\n{listing}\n</tools>\n"
    if mode is ToolMode.FORCED:
        return head + (
            'Reply with only a JSON object {"name": function name, "arguments": {...}} '
            "(or a JSON array of them) calling the function(s) the user needs."
        )
    if deepseek:
        example = (
            f"{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}FUNCTION_NAME\n```json\n"
            f"ARGUMENTS_AS_JSON\n```{DS_CALL_END}{DS_CALLS_END}"
        )
    else:
        example = f'{HERMES_BEGIN}\n{{"name": "FUNCTION_NAME", "arguments": {{...}}}}\n{HERMES_END}'
    return head + f"To call a function, reply with exactly:\n{example}\nOtherwise answer normally."


def forced_schema(body: ChatCompletionRequest) -> str:
    """JSON schema of the output when a call is forced: one named call, or an array of calls."""

    def call_schema(tool: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "name": {"const": tool.function.name},
                "arguments": tool.function.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }

    tools = body.tools or []
    if isinstance(body.tool_choice, NamedToolChoice):
        wanted = body.tool_choice.function.name
        return json.dumps(call_schema(next(t for t in tools if t.function.name == wanted)))
    items = call_schema(tools[0]) if len(tools) == 1 else {"anyOf": [call_schema(t) for t in tools]}
    schema: dict[str, Any] = {"type": "array", "items": items, "minItems": 1}
    if not body.parallel_tool_calls:
        schema["maxItems"] = 1
    return json.dumps(schema)
