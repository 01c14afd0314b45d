"""Tool calls read back out of model output: DeepSeek's framing, Hermes tags, forced JSON."""

from __future__ import annotations

import json

import pytest

from appliance.api.openai.tools import (
    ToolCallStream,
    parse_deepseek_call,
    parse_forced,
)

DS_R1 = (
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    '```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜>\n'
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
    '```json\n{"zone": "CET"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
)
DS_V31 = (
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
    '{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
)
HERMES = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": "{\\"zone\\": \\"CET\\"}"}\n</tool_call>'
)


def parse_tool_calls(text: str) -> tuple[str, list]:
    """A whole (non-streamed) answer goes through the same stream parser, in one piece."""
    stream = ToolCallStream()
    content, calls = stream.feed(text)
    more, last = stream.finish()
    return content + more, calls + last


def names_and_args(calls: list) -> list[tuple[str, dict]]:
    return [(call.name, json.loads(call.arguments)) for call in calls]


TWO_CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DS_R1, TWO_CALLS),
        (DS_V31, TWO_CALLS[:1]),
        (HERMES, TWO_CALLS),
    ],
    ids=["deepseek-r1", "deepseek-v3.1", "hermes"],
)
def test_calls_are_parsed_with_json_arguments(text: str, expected: list) -> None:
    content, calls = parse_tool_calls(text)
    assert content == ""
    assert names_and_args(calls) == expected


@pytest.mark.parametrize("text", [DS_R1, HERMES], ids=["deepseek", "hermes"])
def test_streamed_one_character_at_a_time_gives_the_same_calls(text: str) -> None:
    stream = ToolCallStream()
    content, calls = "", []
    for char in "I'll check. " + text:
        more, found = stream.feed(char)
        content += more
        calls += found
    more, found = stream.finish()
    assert content + more == "I'll check. "
    assert names_and_args(calls + found) == TWO_CALLS


def test_each_call_is_emitted_as_soon_as_it_closes() -> None:
    stream = ToolCallStream()
    first_call_end = DS_R1.index("<｜tool▁call▁end｜>") + len("<｜tool▁call▁end｜>")
    _, calls = stream.feed(DS_R1[:first_call_end])
    assert [c.name for c in calls] == ["get_weather"]
    _, calls = stream.feed(DS_R1[first_call_end:])
    assert [c.name for c in calls] == ["get_time"]


def test_text_that_only_looks_like_a_marker_start_is_released() -> None:
    stream = ToolCallStream()
    assert stream.feed("a <tool") == ("a ", [])
    assert stream.feed("box> b") == ("<toolbox> b", [])
    assert stream.finish() == ("", [])


def test_plain_text_passes_through_untouched() -> None:
    assert parse_tool_calls("Paris is the capital.") == ("Paris is the capital.", [])


def test_a_call_cut_off_before_its_end_marker_is_still_parsed() -> None:
    content, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"x": 1}}')
    assert content == ""
    assert names_and_args(calls) == [("f", {"x": 1})]


def test_a_tagged_block_that_is_not_a_call_stays_text() -> None:
    content, calls = parse_tool_calls("<tool_call>not json</tool_call> sorry")
    assert calls == []
    assert "not json" in content and "sorry" in content


def test_arguments_that_are_not_json_are_passed_on_as_written() -> None:
    call = parse_deepseek_call("function<｜tool▁sep｜>f\n```json\n{broken\n```")
    assert call is not None and call.name == "f" and call.arguments == "{broken"


def test_call_ids_are_unique_openai_style() -> None:
    _, calls = parse_tool_calls(HERMES)
    assert len({c.id for c in calls}) == 2
    assert all(c.id.startswith("call_") for c in calls)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "get_weather", "arguments": {"city": "Paris"}}', TWO_CALLS[:1]),
        (
            '[{"name": "get_weather", "arguments": {"city": "Paris"}},'
            ' {"name": "get_time", "arguments": {"zone": "CET"}}]',
            TWO_CALLS,
        ),
        ("not json", []),
        ('{"arguments": {}}', []),
    ],
)
def test_forced_output_is_read_as_a_call_or_an_array_of_calls(text: str, expected: list) -> None:
    assert names_and_args(parse_forced(text)) == expected
