"""The `<think>` splitter: same answer however the stream is cut, and the R1 prompt case."""

from __future__ import annotations

import itertools

import pytest

from appliance.api.openai.reasoning import (
    PassThrough,
    ReasoningFormat,
    ReasoningSplitter,
    Split,
    parse_format,
    prompt_opens_thinking,
)

# (output text, prompt opened <think>, expected reasoning, expected content)
CASES = [
    ("Let me think.\n</think>\n\nParis.", True, "Let me think.", "Paris."),
    ("<think>\nhmm, France\n</think>\n\nParis.", False, "hmm, France", "Paris."),
    ("\n<think>hmm</think>Paris", False, "hmm", "Paris"),
    ("<think>\nrepeated tag</think>ok", True, "repeated tag", "ok"),
    ("Paris is <think> big", False, "", "Paris is <think> big"),
    (" Paris.", False, "", " Paris."),
    ("still thinking when cut off", True, "still thinking when cut off", ""),
    ("a</think>b <think>c</think> d", True, "a", "b <think>c</think> d"),
    ("x </th y</think>z", True, "x </th y", "z"),
    ("ends mid-tag </th", True, "ends mid-tag </th", ""),
    ("<thi", False, "", "<thi"),
    ("<think>\n\n</think>\n\nskipped thinking", False, "", "skipped thinking"),
    ("two\n\nlines\n</think>\n\nand\n\nmore\n", True, "two\n\nlines", "and\n\nmore\n"),
]


def split_text(text: str, *, thinking_opened: bool = False) -> Split:
    """A whole (non-streamed) answer goes through the same splitter, in one piece."""
    return run([text], thinking_opened)


def run(pieces: list[str], opened: bool) -> Split:
    splitter = ReasoningSplitter(thinking_opened=opened)
    total = Split()
    for piece in [*pieces, None]:
        part = splitter.finish() if piece is None else splitter.feed(piece)
        total.reasoning += part.reasoning
        total.content += part.content
    return total


@pytest.mark.parametrize(("text", "opened", "reasoning", "content"), CASES)
def test_whole_output_splits_into_reasoning_and_answer(
    text: str, opened: bool, reasoning: str, content: str
) -> None:
    assert split_text(text, thinking_opened=opened) == Split(reasoning, content)


@pytest.mark.parametrize(("text", "opened", "reasoning", "content"), CASES)
def test_every_cut_into_two_or_three_pieces_gives_the_same_split(
    text: str, opened: bool, reasoning: str, content: str
) -> None:
    for i, j in itertools.combinations_with_replacement(range(len(text) + 1), 2):
        pieces = [text[:i], text[i:j], text[j:]]
        assert run(pieces, opened) == Split(reasoning, content), f"cut at {i}, {j}: {pieces}"


@pytest.mark.parametrize(("text", "opened", "reasoning", "content"), CASES)
def test_one_character_at_a_time_gives_the_same_split(
    text: str, opened: bool, reasoning: str, content: str
) -> None:
    assert run(list(text), opened) == Split(reasoning, content)


def test_closing_tag_cut_across_chunks_never_leaks_into_either_part() -> None:
    splitter = ReasoningSplitter(thinking_opened=True)
    first = splitter.feed("because</th")
    second = splitter.feed("ink>\n\nParis")
    assert first == Split(reasoning="because")
    assert second == Split(content="Paris")
    assert splitter.finish() == Split()


def test_reasoning_streams_as_it_comes_rather_than_at_the_end() -> None:
    splitter = ReasoningSplitter(thinking_opened=True)
    assert splitter.feed("Okay, ") == Split(reasoning="Okay,")  # the space waits for more text
    assert splitter.feed("so") == Split(reasoning=" so")
    assert splitter.in_reasoning


def test_opening_tag_cut_across_chunks_is_recognised() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<th") == Split()
    assert splitter.feed("ink>hm") == Split(reasoning="hm")
    assert splitter.feed("</think>ok") == Split(content="ok")


def test_none_format_keeps_tags_and_restores_the_prompts_opening_tag() -> None:
    passthrough = PassThrough(thinking_opened=True)
    assert passthrough.feed("hmm</think>Paris") == Split(content="<think>\nhmm</think>Paris")
    assert passthrough.feed(" again") == Split(content=" again")


@pytest.mark.parametrize(
    ("prompt", "opens"),
    [
        ("<｜User｜>Hi<｜Assistant｜><think>\n", True),
        ("<｜User｜>Hi<｜Assistant｜><think>", True),
        ("<｜User｜>Hi<｜Assistant｜>", False),
        ("<｜Assistant｜><think>\n\n</think>\n\n", False),
    ],
)
def test_prompt_opens_thinking_only_when_it_ends_with_the_tag(prompt: str, opens: bool) -> None:
    assert prompt_opens_thinking(prompt) is opens


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("deepseek", "reasoning_content"),
        ("reasoning_content", "reasoning_content"),
        ("ollama", "thinking"),
        ("thinking", "thinking"),
        ("vllm", "reasoning"),
        ("Reasoning", "reasoning"),
        ("none", None),
    ],
)
def test_reasoning_format_names_and_their_fields(name: str, field: str | None) -> None:
    assert parse_format(name).field == field


def test_unknown_reasoning_format_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"deepseek.*ollama"):
        parse_format("openai")
    assert ReasoningFormat("vllm") is ReasoningFormat.VLLM
