"""Chat: a playground against a model on this box — streaming, reasoning in a collapsible
block, time to first token and tokens per second after each answer.

It talks to the daemon's `/v1` on the admin socket (the LAN API's serving path, without an API
key to create and forget); see docs/console.md.
"""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Collapsible, Input, Select, Static

from appliance.client import calls
from appliance.client.chat import ChatEvent
from appliance.errors import ApplianceError
from appliance.ui.screens.base import ConsoleScreen

MAX_TOKENS = 512
"""Playground answers stop here, so a rambling model cannot hold a slot for long."""


class Answer(Vertical):
    """One exchange: the question, the streamed reasoning and answer, then the figures."""

    DEFAULT_CSS = """
    Answer { height: auto; margin-bottom: 1; }
    Answer .question { color: $accent; text-style: bold; }
    Answer Collapsible { display: none; }
    Answer.reasoned Collapsible { display: block; }
    Answer .figures { color: $text-muted; }
    """

    def __init__(self, question: str) -> None:
        super().__init__(classes="answer")
        self.question = question
        self.text = ""
        self.reasoning = ""
        self.figures_text = ""

    def compose(self) -> ComposeResult:
        yield Static(f"> {self.question}", classes="question", markup=False)
        with Collapsible(title="Reasoning", collapsed=True):
            yield Static("", classes="reasoning-text", markup=False)
        yield Static("…", classes="answer-text", markup=False)
        yield Static("", classes="figures", markup=False)

    def add(self, event: ChatEvent) -> None:
        if event.reasoning:
            self.reasoning += event.reasoning
            self.add_class("reasoned")
            self.query_one(".reasoning-text", Static).update(self.reasoning)
        if event.content:
            self.text += event.content
            self.query_one(".answer-text", Static).update(self.text.lstrip())

    def finish(self, figures: str) -> None:
        if not self.text:
            self.query_one(".answer-text", Static).update("(no answer text)")
        self.figures_text = figures
        self.query_one(".figures", Static).update(figures)


def figures(started: float, first: float | None, ended: float, tokens: int | None) -> str:
    """`TTFT 0.21 s · 38.5 tok/s · 64 tokens`; tok/s over the time after the first token."""
    if first is None:
        return f"no tokens after {ended - started:.2f} s"
    parts = [f"TTFT {first - started:.2f} s"]
    if tokens:
        if tokens > 1 and ended > first:
            parts.append(f"{(tokens - 1) / (ended - first):.1f} tok/s")
        parts.append(f"{tokens} tokens")
    return " · ".join(parts)


class ChatScreen(ConsoleScreen):
    MODE = "chat"
    BINDINGS = [
        Binding("escape", "leave_input", "Keys", id="chat.keys",
                tooltip="Leave the message line, so 1-5 switch screens"),
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new",
                tooltip="Forget this conversation"),
        Binding("ctrl+t", "model", "Model", id="chat.model", tooltip="Choose the model"),
        Binding("m", "focus_input", "Message", id="chat.message", tooltip="Type a message"),
    ]  # fmt: skip
    PALETTE = [("New chat", "Forget the conversation", "new_chat")]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, str]] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-bar"):
            yield Static("Model:", id="chat-model-label")
            yield Select([], prompt="no model", id="chat-model", allow_blank=True)
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="Message (Enter sends, Esc leaves)", id="chat-input")

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.query_one("#chat-input", Input).focus()

    def action_refresh(self) -> None:
        self._models()

    @work(exclusive=True, group="chat-models")
    async def _models(self) -> None:
        status = await self.poll(calls.status())
        models = await self.poll(calls.models())
        if status is None or models is None:
            return
        ready = {m.name for m in status.models_loaded if m.state == "ready"}
        # Loaded models first; others load on the first message (and say so).
        names = sorted(m.name for m in models if m.name in ready) + sorted(
            m.name for m in models if m.name not in ready
        )
        select = self.query_one("#chat-model", Select)
        current = select.value
        select.set_options([(f"{n}{'' if n in ready else ' (not loaded)'}", n) for n in names])
        if current in names:
            select.value = current
        elif names:
            select.value = names[0]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        model = self.query_one("#chat-model", Select).value
        if not text:
            return
        if not isinstance(model, str):
            self.notify("no model installed: import one on the Models screen", severity="error")
            return
        event.input.value = ""
        answer = Answer(text)
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(answer)
        log.scroll_end(animate=False)
        self.history.append({"role": "user", "content": text})
        self._ask(model, answer)

    @work(exclusive=True, group="chat")
    async def _ask(self, model: str, answer: Answer) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        started = time.monotonic()
        first: float | None = None
        tokens: int | None = None
        try:
            async for event in self.client.chat(model, list(self.history), MAX_TOKENS):
                if first is None and (event.content or event.reasoning):
                    first = time.monotonic()
                answer.add(event)
                tokens = event.completion_tokens or tokens
                log.scroll_end(animate=False)
        except ApplianceError as error:
            self.history.pop()  # the question was not answered; let it be asked again
            answer.finish("failed")
            self.console.show_error(error)
            return
        answer.finish(figures(started, first, time.monotonic(), tokens))
        self.history.append({"role": "assistant", "content": answer.text})
        log.scroll_end(animate=False)

    def action_leave_input(self) -> None:
        self.set_focus(None)

    def action_focus_input(self) -> None:
        self.query_one("#chat-input", Input).focus()

    def action_model(self) -> None:
        self.query_one("#chat-model", Select).focus()

    async def action_new_chat(self) -> None:
        self.history.clear()
        await self.query_one("#chat-log", VerticalScroll).remove_children()
        self.notify("new conversation")
