"""The console's small modals: a titled error, a yes/no confirmation, a text prompt, a text
viewer. Each returns its answer through `dismiss`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static


class ErrorModal(ModalScreen[None]):
    """A daemon error as the daemon worded it, under its title; any of Enter/Esc closes it."""

    BINDINGS = [
        Binding("escape,enter", "dismiss", "Close", id="error.close", tooltip="Close"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__(classes="modal error-modal")
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="error-dialog") as dialog:
            dialog.border_title = self.title_text
            yield Static(self.message, id="error-message", markup=False)
            yield Button("OK", id="error-ok", variant="error")
        yield Footer()

    def on_button_pressed(self) -> None:
        self.dismiss()


class ConfirmModal(ModalScreen[bool]):
    """Asks before something that cannot be undone; `y` confirms, `n`/Esc cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Do it"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Cancel"),
    ]

    def __init__(self, title: str, question: str) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog") as dialog:
            dialog.border_title = self.title_text
            yield Static(self.question, id="confirm-question", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="confirm-yes", variant="warning")
                yield Button("No (n)", id="confirm-no")
        yield Footer()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class PromptModal(ModalScreen[str | None]):
    """One line of text; Enter answers it, Esc cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel", tooltip="Cancel")]

    def __init__(self, title: str, label: str, value: str = "", placeholder: str = "") -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.label = label
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="prompt-dialog") as dialog:
            dialog.border_title = self.title_text
            yield Label(self.label)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextModal(ModalScreen[None]):
    """Read-only text (model details, hook output), scrollable; Esc closes."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="text.close", tooltip="Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="text-dialog") as dialog:
            dialog.border_title = self.title_text
            dialog.border_subtitle = "Esc closes"
            yield Static(self.text, id="text-body", markup=False)
        yield Footer()
