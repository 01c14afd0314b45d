"""A choice's text: UTF-8 split across tokens, stop strings across tokens, thinking tags."""

from __future__ import annotations

from appliance.engine.messages import Submit
from appliance.engine.worker.slots import Choice


def choice(**fields: object) -> Choice:
    return Choice(Submit("r", "prompt", max_tokens=10, **fields), 0, prompt_tokens=1)  # type: ignore[arg-type]


def test_a_character_split_across_tokens_is_sent_whole() -> None:
    text = "北京".encode()  # 3 bytes per character
    c = choice()
    sent = [c.add_piece(text[:2]), c.add_piece(text[2:4]), c.add_piece(text[4:])]
    assert sent == ["", "北", "京"]
    assert "\ufffd" not in "".join(sent)


def test_stop_string_split_across_tokens_ends_the_text_before_it() -> None:
    c = choice(stop=["<|end|>"])
    sent = [c.add_piece(p.encode()) for p in ("Hello <|", "en", "d|> never")]
    assert "".join(sent) == "Hello "
    assert c.finish_reason == "stop"


def test_text_that_only_looked_like_a_stop_string_is_released() -> None:
    c = choice(stop=["STOP"])
    assert c.add_piece(b"ST") == ""  # could be the start of STOP: held back
    assert c.add_piece(b"ART") == "START"
    assert c.finish_reason is None


def test_held_text_is_flushed_when_generation_ends_otherwise() -> None:
    c = choice(stop=["STOP"])
    c.add_piece(b"the end ST")
    assert c.flush() == "ST"


def test_thinking_is_tracked_across_tokens_for_the_budget() -> None:
    c = choice(prompt_opens_thinking=True, reasoning_budget=2)
    assert c.in_thinking
    c.thinking_tokens = 2
    assert c.over_reasoning_budget()
    c.add_piece(b"done </th")
    c.add_piece(b"ink> answer")
    assert not c.in_thinking
    assert not c.over_reasoning_budget()
    c.add_piece(b" <think>")
    assert c.in_thinking
