"""Engine messages → OpenAI choices: reasoning fields, tool calls, n choices, logprobs."""

from __future__ import annotations

import pytest

from appliance.api.openai import convert
from appliance.api.openai.chat_prompt import ToolMode
from appliance.api.openai.choices import ChoiceEvent, ChoiceOutput
from appliance.api.openai.reasoning import ReasoningFormat
from appliance.engine.messages import Delta, Done, TokenLogprob, TopLogprob


def delta(text: str, index: int = 0, logprob: float | None = None) -> Delta:
    logprobs = None
    if logprob is not None:
        logprobs = [TokenLogprob(text, logprob, [TopLogprob(text, logprob), TopLogprob("x", -9)])]
    return Delta("r", text, index=index, logprobs=logprobs)


def done(index: int = 0, *, completion: int = 3, reason: str = "stop") -> Done:
    return Done("r", reason, prompt_tokens=10, completion_tokens=completion, index=index,
                cached_tokens=4)  # fmt: skip


def run(output: ChoiceOutput, *pieces: str, reason: str = "stop") -> list:
    events = [output.feed(delta(p)) for p in pieces]
    return [*events, output.finish(done(reason=reason))]


def test_r1_stream_puts_thinking_in_reasoning_content_and_the_rest_in_content() -> None:
    output = ChoiceOutput(0, thinking_opened=True)
    events = run(output, "Paris is", " the capital", ".</th", "ink>\n\n", "Paris.")
    chunks = [
        convert.event_chunk("id", "m", 0, e, reasoning=ReasoningFormat.DEEPSEEK, logprobs=False)
        for e in events if e.visible
    ]  # fmt: skip
    deltas = [c.model_dump(mode="json")["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"reasoning_content": "Paris is"},
        {"reasoning_content": " the capital"},
        {"reasoning_content": "."},
        {"content": "Paris."},
    ]
    assert events[-1].finish_reason == "stop"


def test_reasoning_field_follows_the_chosen_format_and_unused_ones_are_left_out() -> None:
    for fmt, field in ((ReasoningFormat.OLLAMA, "thinking"), (ReasoningFormat.VLLM, "reasoning")):
        output = ChoiceOutput(0, reasoning=fmt, thinking_opened=True)
        run(output, "hm</think>ok")
        answer = convert.completion("id", "m", [output], reasoning=fmt, logprobs=False)
        message = answer.model_dump(mode="json")["choices"][0]["message"]
        assert message == {"role": "assistant", "content": "ok", field: "hm"}


def test_none_format_leaves_the_whole_block_in_content() -> None:
    output = ChoiceOutput(0, reasoning=ReasoningFormat.NONE, thinking_opened=True)
    run(output, "hm</think>ok")
    answer = convert.completion("id", "m", [output], reasoning=ReasoningFormat.NONE,
                                logprobs=False)  # fmt: skip
    assert answer.choices[0].message.content == "<think>\nhm</think>ok"
    assert answer.choices[0].message.reasoning_content is None


def test_parsed_tool_calls_end_the_choice_with_finish_reason_tool_calls() -> None:
    output = ChoiceOutput(0, tools=ToolMode.PARSE)
    events = run(output, "<tool_call>", '{"name": "f", "arguments": {"a": 1}}', "</tool_call>")
    assert [c.name for c in events[2].tool_calls] == ["f"]
    answer = convert.completion("id", "m", [output], reasoning=ReasoningFormat.DEEPSEEK,
                                logprobs=False)  # fmt: skip
    wire = answer.model_dump(mode="json")["choices"][0]
    assert wire["finish_reason"] == "tool_calls"
    assert wire["message"]["content"] is None
    assert wire["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}


def test_streamed_tool_call_deltas_carry_index_id_name_and_arguments() -> None:
    output = ChoiceOutput(0, tools=ToolMode.PARSE)
    events = run(output, '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
                 '<tool_call>{"name": "g", "arguments": {}}</tool_call>')  # fmt: skip
    chunk = convert.event_chunk("id", "m", 0, events[0], reasoning=ReasoningFormat.DEEPSEEK,
                                logprobs=False)  # fmt: skip
    calls = chunk.model_dump(mode="json")["choices"][0]["delta"]["tool_calls"]
    assert [(c["index"], c["type"], c["function"]["name"]) for c in calls] == [
        (0, "function", "f"), (1, "function", "g")
    ]  # fmt: skip
    assert all(c["id"].startswith("call_") for c in calls)


def test_forced_call_is_read_from_the_whole_output_at_the_end() -> None:
    output = ChoiceOutput(0, tools=ToolMode.FORCED)
    events = run(output, '{"name": "get_weather", ', '"arguments": {"city": "Paris"}}')
    assert not any(e.visible for e in events[:-1])
    assert [c.name for c in events[-1].tool_calls] == ["get_weather"]
    assert events[-1].finish_reason == "tool_calls"


def test_a_call_cut_by_max_tokens_keeps_finish_reason_length() -> None:
    output = ChoiceOutput(0, tools=ToolMode.FORCED)
    event = run(output, '{"name": "get_weather", "argu', reason="length")[-1]
    assert event.finish_reason == "length" and event.content == '{"name": "get_weather", "argu'


def test_n_choices_are_ordered_by_index_and_usage_counts_the_prompt_once() -> None:
    outputs = [ChoiceOutput(i) for i in range(2)]
    outputs[1].feed(delta("second", 1))
    outputs[0].feed(delta("first", 0))
    outputs[1].finish(done(1, completion=5))
    outputs[0].finish(done(0, completion=2))
    answer = convert.completion("id", "m", outputs[::-1], reasoning=ReasoningFormat.DEEPSEEK,
                                logprobs=False)  # fmt: skip
    assert [(c.index, c.message.content) for c in answer.choices] == [(0, "first"), (1, "second")]
    usage = answer.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 7, 17)
    assert usage.prompt_tokens_details == {"cached_tokens": 4}


def test_logprobs_come_in_openai_shape_with_bytes_and_alternatives() -> None:
    output = ChoiceOutput(0)
    output.feed(delta("Pa", logprob=-0.5))
    output.feed(delta("ris", logprob=-0.25))
    output.finish(done())
    answer = convert.completion("id", "m", [output], reasoning=ReasoningFormat.DEEPSEEK,
                                logprobs=True)  # fmt: skip
    content = answer.model_dump(mode="json")["choices"][0]["logprobs"]["content"]
    assert content[0] == {
        "token": "Pa", "logprob": -0.5, "bytes": [80, 97],
        "top_logprobs": [{"token": "Pa", "logprob": -0.5, "bytes": [80, 97]},
                         {"token": "x", "logprob": -9.0, "bytes": [120]}],
    }  # fmt: skip
    assert [item["token"] for item in content] == ["Pa", "ris"]


def test_logprobs_of_held_back_text_ride_on_the_next_chunk_that_shows_text() -> None:
    output = ChoiceOutput(0, thinking_opened=True)
    held = output.feed(delta("</th", logprob=-1))
    shown = output.feed(delta("ink>ok", logprob=-2))
    assert not held.visible and held.logprobs == []
    assert shown.content == "ok" and [lp.logprob for lp in shown.logprobs] == [-1, -2]


@pytest.mark.parametrize("fmt", list(ReasoningFormat))
@pytest.mark.parametrize(
    "text", ["Hello", ' "quoted" \\ back', "é 中文 🙂", "line\nbreak\ttab\x01", "</think>"]
)
def test_streamed_text_events_are_the_bytes_the_models_give(
    fmt: ReasoningFormat, text: str
) -> None:
    # The stream writes plain pieces without building models; a client must not see a change.
    chunks = convert.TextChunks('chatcmpl-"x"', "smollm2:135m/ü", 1764000000)
    for event in (ChoiceEvent(index=2, content=text), ChoiceEvent(index=0, reasoning=text)):
        fast = chunks.event(event, fmt, logprobs=False)
        slow = convert.sse(
            convert.event_chunk('chatcmpl-"x"', "smollm2:135m/ü", 1764000000, event,
                                reasoning=fmt, logprobs=False)
        )  # fmt: skip
        if fast is None:  # reasoning where the format has no field for it: the models decide
            assert event.reasoning and fmt.field is None
        else:
            assert fast == slow


def test_events_with_more_than_text_go_through_the_models() -> None:
    chunks = convert.TextChunks("c", "m", 1)
    assert chunks.event(ChoiceEvent(index=0, content="a"), ReasoningFormat.DEEPSEEK, True) is None
    both = ChoiceEvent(index=0, content="a", reasoning="b")
    assert chunks.event(both, ReasoningFormat.DEEPSEEK, False) is None
