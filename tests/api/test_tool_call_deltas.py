"""Tool-call arguments stream while they are written, and join to the finished call."""

from __future__ import annotations

import json

import pytest

from appliance.api.openai.chat_prompt import ToolMode
from appliance.api.openai.choices import ChoiceOutput
from appliance.engine.messages import Delta, Done

DS_R1 = (
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    '```json\n{"city": "Paris", "unit": "C"}\n```<｜tool▁call▁end｜>\n'
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
    '```json\n{"zone": "CET"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
)
DS_V31 = (
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
    '{"city": "Paris", "unit": "C"}<｜tool▁call▁end｜>'
    "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>"
    '{"zone": "CET"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
)
HERMES = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
)
EXPECTED = [("get_weather", {"city": "Paris", "unit": "C"}), ("get_time", {"zone": "CET"})]


def stream_in_characters(text: str) -> tuple[list, ChoiceOutput]:
    output = ChoiceOutput(0, tools=ToolMode.PARSE)
    events = [output.feed(Delta("r", char)) for char in text]
    events.append(output.finish(Done("r", "stop", prompt_tokens=5, completion_tokens=len(text))))
    return events, output


@pytest.mark.parametrize("text", [DS_R1, DS_V31, HERMES], ids=["r1", "v3.1", "hermes"])
def test_arguments_arrive_in_pieces_that_join_to_the_finished_call(text: str) -> None:
    events, output = stream_in_characters(text)
    joined: dict[int, dict] = {}
    pieces: dict[int, int] = {}
    for event in events:
        for delta in event.call_deltas:
            call = joined.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            if delta.id:
                assert call["id"] is None, "id and name come once, in the first delta"
                call.update(id=delta.id, name=delta.name)
            call["arguments"] += delta.arguments
            pieces[delta.index] = pieces.get(delta.index, 0) + bool(delta.arguments)
    got = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(joined.items())]
    assert got == EXPECTED
    assert all(count > 3 for count in pieces.values()), "arguments should stream, not arrive whole"
    assert [c["id"] for _, c in sorted(joined.items())] == [c.id for c in output.tool_calls]
    assert events[-1].finish_reason == "tool_calls"


def test_the_name_is_sent_before_the_call_is_finished() -> None:
    events, _ = stream_in_characters(HERMES)
    first = next(i for i, e in enumerate(events) if e.call_deltas)
    closing = HERMES.index("</tool_call>")
    assert events[first].call_deltas[0].name == "get_weather"
    assert first < closing


def test_arguments_written_as_a_json_string_arrive_whole_at_the_end() -> None:
    text = '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>'
    events, _ = stream_in_characters(text)
    deltas = [d for e in events for d in e.call_deltas]
    assert deltas[0].name == "f"
    assert json.loads("".join(d.arguments for d in deltas)) == {"x": 1}


def test_text_that_only_looks_like_a_call_opens_no_call() -> None:
    events, output = stream_in_characters("<tool_call>not a call</tool_call> sorry")
    assert not any(e.call_deltas for e in events)
    assert "sorry" in output.content
