"""The upstream answer reader: OpenAI stream chunks from vLLM, llama.cpp or an appliance become
engine messages that the API's reasoning split and tool-call parser read like a worker's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appliance.api.openai.chat_prompt import ToolMode
from appliance.api.openai.choices import ChoiceOutput
from appliance.api.openai.reasoning import ReasoningFormat
from appliance.engine.messages import Delta, Done, Submit
from appliance.upstream.wire import AnswerReader, StreamError, chat_body, error_message


def sse(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> str:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"choices": [choice]})


def read(lines: list[str], n: int = 1) -> list[Delta | Done]:
    reader = AnswerReader("r1", n)
    out: list[Delta | Done] = []
    for line in [*lines, "data: [DONE]"]:
        out += reader.line(line)
    assert reader.finished
    return out + reader.finish()


def answer(lines: list[str], fmt: ReasoningFormat, tools: ToolMode = ToolMode.OFF) -> ChoiceOutput:
    output = ChoiceOutput(0, reasoning=fmt, tools=tools)
    for message in read(lines):
        if isinstance(message, Done):
            output.finish(message)
        else:
            output.feed(message)
    return output


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "thinking"])
@pytest.mark.parametrize("fmt", [ReasoningFormat.DEEPSEEK, ReasoningFormat.VLLM])
def test_reasoning_in_any_upstream_field_reaches_the_callers_field(
    field: str, fmt: ReasoningFormat
) -> None:
    lines = [sse({"role": "assistant"}), sse({field: "Let me "}), sse({field: "think."}),
             sse({"content": "Paris."}), sse({}, "stop")]  # fmt: skip
    output = answer(lines, fmt)
    assert output.reasoning == "Let me think."
    assert output.content == "Paris."
    assert output.finish_reason == "stop"


def test_reasoning_left_in_the_text_for_clients_that_parse_tags_themselves() -> None:
    lines = [sse({"reasoning_content": "hmm"}), sse({"content": "Yes."}), sse({}, "stop")]
    output = answer(lines, ReasoningFormat.NONE)
    assert output.content == "<think>hmm</think>Yes."


def test_upstream_tool_calls_become_tool_calls_again() -> None:
    call = {"index": 0, "id": "x", "function": {"name": "weather", "arguments": '{"city": '}}
    more = {"index": 0, "function": {"arguments": '"Paris"}'}}
    lines = [sse({"tool_calls": [call]}), sse({"tool_calls": [more]}), sse({}, "tool_calls")]
    output = answer(lines, ReasoningFormat.DEEPSEEK, ToolMode.PARSE)
    assert [(c.name, json.loads(c.arguments)) for c in output.tool_calls] == [
        ("weather", {"city": "Paris"})
    ]
    assert output.finish_reason == "tool_calls"
    assert output.content == ""


def test_usage_from_the_upstream_is_counted_once_per_request() -> None:
    usage = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 9,
                                                            "completion_tokens": 3}})  # fmt: skip
    messages = read([sse({"content": "a"}), sse({"content": "b"}, "length"), usage])
    done = messages[-1]
    assert isinstance(done, Done)
    assert (done.prompt_tokens, done.completion_tokens, done.finish_reason) == (9, 3, "length")


def test_several_choices_each_end_and_the_last_says_so() -> None:
    lines = [sse({"content": "a"}, index=0), sse({"content": "b"}, index=1),
             sse({}, "stop", index=0), sse({}, "stop", index=1)]  # fmt: skip
    dones = [m for m in read(lines, n=2) if isinstance(m, Done)]
    assert [(d.index, d.last) for d in dones] == [(0, False), (1, True)]


def test_an_error_event_inside_the_stream_is_reported_with_its_message() -> None:
    reader = AnswerReader("r1", 1)
    with pytest.raises(StreamError, match="out of memory"):
        reader.line('data: {"error": {"message": "out of memory"}}')


def test_a_choice_the_request_did_not_ask_for_is_refused() -> None:
    with pytest.raises(StreamError, match="choice 3 of 1"):
        AnswerReader("r1", 1).line(sse({"content": "x"}, index=3))


def test_the_request_goes_up_as_the_client_set_it_with_the_upstreams_model_id() -> None:
    submit = Submit(id="r", prompt="", max_tokens=100,
                    upstream_body={"model": "ours", "messages": [], "top_k": 5,
                                   "reasoning_format": "vllm", "stream": False})  # fmt: skip
    body = chat_body(submit, "deepseek-ai/DeepSeek-R1")
    assert body["model"] == "deepseek-ai/DeepSeek-R1"
    assert body["stream"] is True and body["top_k"] == 5 and body["max_tokens"] == 100
    assert "reasoning_format" not in body


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"error": {"message": "bad model", "type": "x"}}', "bad model"),
        (b'{"detail": "Invalid API key"}', "Invalid API key"),
        (b"upstream exploded", "upstream exploded"),
    ],
)
def test_error_answers_of_every_shape_give_their_message(raw: bytes, message: str) -> None:
    assert error_message(raw) == message
