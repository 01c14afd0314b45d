"""HelpScreen: the keys of the screen underneath and of the whole console, with what each does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

_GENERAL = """
Ctrl+P      command palette (every action, by name)
Tab         next field or table;  Shift+Tab previous
Esc         close a dialog; in the chat, leave the message line
Enter       open the selected row (details, output)
"""


def _key_lines(bindings: list[Binding]) -> list[str]:
    lines = []
    for binding in bindings:
        if binding.action.startswith("switch_mode") or not binding.description:
            continue
        keys = ", ".join(k.replace("question_mark", "?") for k in binding.key.split(","))
        lines.append(f"{keys:11} {binding.description}: {binding.tooltip or ''}".rstrip(": "))
    return lines


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__(classes="modal")
        self.under = under

    def compose(self) -> ComposeResult:
        screen_keys = [b for b in self.under.BINDINGS if isinstance(b, Binding)]
        app_keys = [b for b in self.app.BINDINGS if isinstance(b, Binding)]
        text = "\n".join(
            [
                "Screens: 1 Dashboard  2 Models  3 Keys  4 Chat  5 Hooks & logs  6 Settings",
                "",
                "This screen:",
                *_key_lines(screen_keys),
                "",
                "Everywhere:",
                *_key_lines(app_keys),
                _GENERAL.rstrip(),
            ]
        )
        with VerticalScroll(classes="dialog wide", id="help-dialog") as dialog:
            dialog.border_title = "Keys"
            dialog.border_subtitle = "Esc closes"
            yield Static(text, id="help-text", markup=False)
        yield Footer()
