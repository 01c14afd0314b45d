"""What the model is shown: tools, tool turns and the thinking block, per template kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.api.openai.chat_prompt import ToolMode, build_prompt
from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.records import ModelFormat, ModelInfo

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
]


def model(template: str | None) -> ModelInfo:
    return ModelInfo(
        name="m", format=ModelFormat.GGUF, path="/m.gguf", sha256="0" * 64, size_bytes=1,
        chat_template=template, bos_token=BOS, eos_token=EOS,
    )  # fmt: skip


def deepseek() -> ModelInfo:
    return model((TEMPLATES / "deepseek-r1-distill.jinja").read_text())


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def test_r1_prompt_opens_thinking_and_the_output_is_parsed_as_reasoning_first() -> None:
    prompt = build_prompt(request(), deepseek())
    assert prompt.text.endswith("<｜Assistant｜><think>\n")
    assert prompt.opens_thinking and prompt.tool_mode is ToolMode.OFF


def test_thinking_switched_off_closes_the_block_in_the_prompt() -> None:
    for fields in ({"chat_template_kwargs": {"enable_thinking": False}}, {"reasoning_budget": 0}):
        prompt = build_prompt(request(**fields), deepseek())
        assert prompt.text.endswith("<think>\n\n</think>\n\n")
        assert not prompt.opens_thinking


def test_json_output_closes_the_thinking_block_because_the_grammar_starts_at_once() -> None:
    prompt = build_prompt(request(response_format={"type": "json_object"}), deepseek())
    assert prompt.text.endswith("</think>\n\n") and not prompt.opens_thinking


def test_deepseek_template_gets_tools_described_in_its_own_call_format() -> None:
    prompt = build_prompt(request(tools=[WEATHER]), deepseek())
    assert prompt.tool_mode is ToolMode.PARSE
    system, _, _ = prompt.text.partition("<｜User｜>")
    assert '"name": "get_weather"' in system
    assert "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>" in system


def test_deepseek_template_renders_earlier_tool_calls_and_results() -> None:
    prompt = build_prompt(request(messages=HISTORY, tools=[WEATHER]), deepseek())
    assert (
        "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
        'get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜>'
    ) in prompt.text
    assert "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>18 C, sunny<｜tool▁output▁end｜>" in (
        prompt.text
    )


def test_template_without_tool_support_gets_hermes_tags_for_calls_and_results() -> None:
    prompt = build_prompt(request(messages=HISTORY, tools=[WEATHER]), model(None))
    assert "<tool_call>" in prompt.text.split("<|im_start|>user")[0]  # the instructions
    assert (
        '<|im_start|>assistant\n\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Paris"}}\n</tool_call><|im_end|>'
    ) in prompt.text
    assert "<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response>" in prompt.text


def test_template_that_renders_tools_itself_receives_them() -> None:
    template = (
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }};"
        "{% for c in m.tool_calls or [] %}call {{ c.function.arguments | tojson }};{% endfor %}"
        "{% endfor %}"
    )
    prompt = build_prompt(request(messages=HISTORY, tools=[WEATHER, CLOCK]), model(template))
    assert prompt.text.startswith("[get_weather][get_time]user:Weather in Paris?;")
    assert 'call {"city": "Paris"};' in prompt.text  # arguments as a mapping, as HF expects
    assert "tool:18 C, sunny;" in prompt.text


def test_tool_choice_none_shows_no_tools() -> None:
    prompt = build_prompt(request(tools=[WEATHER], tool_choice="none"), model(None))
    assert prompt.tool_mode is ToolMode.OFF and "get_weather" not in prompt.text


def test_named_tool_choice_forces_that_call_with_its_parameters_schema() -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    prompt = build_prompt(request(tools=[WEATHER, CLOCK], tool_choice=named), model(None))
    assert prompt.tool_mode is ToolMode.FORCED
    schema = json.loads(prompt.forced_schema or "")
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert schema["properties"]["arguments"]["required"] == ["city"]


def test_required_tool_choice_forces_an_array_of_calls_to_any_tool() -> None:
    body = request(tools=[WEATHER, CLOCK], tool_choice="required", parallel_tool_calls=False)
    schema = json.loads(build_prompt(body, model(None)).forced_schema or "")
    assert schema["type"] == "array" and schema["minItems"] == 1 and schema["maxItems"] == 1
    names = [option["properties"]["name"]["const"] for option in schema["items"]["anyOf"]]
    assert names == ["get_weather", "get_time"]


def test_developer_role_is_rendered_as_system() -> None:
    body = request(messages=[{"role": "developer", "content": "Be brief."},
                             {"role": "user", "content": "Hi"}])  # fmt: skip
    assert build_prompt(body, model(None)).text.startswith("<|im_start|>system\nBe brief.")


def test_chat_template_kwargs_reach_the_template_but_cannot_replace_the_messages() -> None:
    template = "{{ greeting }}{% for m in messages %}{{ m.content }}{% endfor %}"
    body = request(chat_template_kwargs={"greeting": "Hello ", "messages": []})
    assert build_prompt(body, model(template)).text == "Hello Hi"
