"""The legacy `/v1/completions` stream: its text events are the bytes the models give."""

from __future__ import annotations

import pytest

from appliance.api.openai import convert
from appliance.api.openai.completions import TextChoice, TextCompletion, TextPieces


@pytest.mark.parametrize(
    "text", ["Hello", ' "quoted" \\ back', "é 中文 🙂", "line\nbreak\ttab\x01", ""]
)
@pytest.mark.parametrize("index", [0, 3])
def test_streamed_text_pieces_are_the_bytes_the_models_give(text: str, index: int) -> None:
    # Written without building models; a client parsing the stream must not see a change.
    completion_id, model, created = 'cmpl-"x"', "smollm2:135m/ü", 1764000000
    fast = TextPieces(completion_id, model, created).event(index, text)
    slow = convert.sse(
        TextCompletion(id=completion_id, created=created, model=model,
                       choices=[TextChoice(index=index, text=text)])
    )  # fmt: skip
    assert fast == slow
