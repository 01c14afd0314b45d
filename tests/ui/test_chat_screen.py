"""The chat playground: a streamed answer from the real model with its figures, and reasoning
kept in a collapsible block."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Collapsible, Select

from appliance.client.chat import ChatEvent
from appliance.ui.app import ApplianceApp
from appliance.ui.screens.chat import Answer, figures
from helpers.console import settle
from helpers.daemon import Daemon


def _answers(app: ApplianceApp) -> list[Answer]:
    return list(app.screen.query(Answer))


async def test_a_message_gets_a_streamed_answer_with_ttft_and_tokens_per_second(
    daemon: Daemon,
) -> None:
    app = ApplianceApp(daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot, lambda: app.screen.query_one("#chat-model", Select).value == "smollm2",
                     "the loaded model chosen")  # fmt: skip
        await pilot.press(*"Name the capital of France.", "enter")
        await settle(pilot, lambda: _answers(app) and "TTFT" in _answers(app)[0].figures_text,
                     "the answer's figures")  # fmt: skip
        [answer] = _answers(app)
        assert answer.text.strip(), "the model answered something"
        assert "tok/s" in answer.figures_text
        await pilot.press(*"And of Spain?", "enter")
        await settle(pilot, lambda: len(_answers(app)) == 2 and _answers(app)[1].figures_text,
                     "the second answer")  # fmt: skip
        assert len(app.screen.history) == 4, "the conversation goes on with both exchanges"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert _answers(app) == [] and app.screen.history == []


class _OneAnswer(App[None]):
    def compose(self) -> ComposeResult:
        yield Answer("why?")


async def test_reasoning_goes_in_a_collapsed_block_apart_from_the_answer() -> None:
    app = _OneAnswer()
    async with app.run_test(size=(80, 24)) as pilot:
        answer = app.query_one(Answer)
        assert not answer.query_one(Collapsible).display, "no block without reasoning"
        answer.add(ChatEvent(reasoning="The user asks why. "))
        answer.add(ChatEvent(content="Because."))
        await pilot.pause()
        block = answer.query_one(Collapsible)
        assert block.display and block.collapsed
        assert answer.reasoning == "The user asks why. " and answer.text == "Because."


def test_figures_give_time_to_first_token_and_decode_speed() -> None:
    assert figures(10.0, 10.5, 12.5, 41) == "TTFT 0.50 s · 20.0 tok/s · 41 tokens"
    assert figures(10.0, None, 11.0, None) == "no tokens after 1.00 s"
