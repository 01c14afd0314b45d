"""The keys screen's dialogs: a new key's name, scope and reasoning format; the new secret,
shown once (copyable to the terminal's clipboard with OSC 52); a key's reasoning format."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from appliance.api.admin.protocol import KeyCreated

REASONING_CHOICES = [
    ("box default", ""),
    ("deepseek (reasoning_content)", "deepseek"),
    ("ollama (thinking)", "ollama"),
    ("vllm (reasoning)", "vllm"),
    ("none (inline <think>)", "none"),
]


class NewKeyScreen(ModalScreen[tuple[str, str, str | None] | None]):
    """Dismissed with (name, scope, reasoning format or None), or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="newkey.cancel", tooltip="Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="newkey-dialog") as dialog:
            dialog.border_title = "Create an API key"
            dialog.border_subtitle = "Enter creates · Esc closes"
            yield Label("Name (who or what uses it):")
            yield Input(placeholder="e.g. open-webui", id="newkey-name")
            yield Label("Scope:")
            yield Select([("user (chat, models)", "user"), ("admin (also admin API)", "admin")],
                         value="user", allow_blank=False, id="newkey-scope")  # fmt: skip
            yield Label("Reasoning format in answers:")
            yield Select(REASONING_CHOICES, value="", allow_blank=False, id="newkey-reasoning")
            yield Button("Create", id="newkey-create", variant="primary")
        yield Footer()

    def _answer(self) -> None:
        name = self.query_one("#newkey-name", Input).value.strip()
        scope = str(self.query_one("#newkey-scope", Select).value)
        reasoning = str(self.query_one("#newkey-reasoning", Select).value) or None
        self.dismiss((name, scope, reasoning))

    def on_input_submitted(self) -> None:
        self._answer()

    def on_button_pressed(self) -> None:
        self._answer()

    def action_cancel(self) -> None:
        self.dismiss(None)


class SecretScreen(ModalScreen[None]):
    """The new key, once: the daemon keeps only its hash."""

    BINDINGS = [
        Binding("c", "copy", "Copy", id="secret.copy", tooltip="Copy to the terminal clipboard"),
        Binding("escape,enter", "dismiss", "Done", id="secret.close", tooltip="Close"),
    ]

    def __init__(self, created: KeyCreated) -> None:
        super().__init__(classes="modal")
        self.created = created

    def compose(self) -> ComposeResult:
        info = self.created.info
        with Vertical(classes="dialog wide", id="secret-dialog") as dialog:
            dialog.border_title = f"API key {info.name} ({info.scope})"
            dialog.border_subtitle = "c copies · Enter closes"
            yield Static("Store this key now: it is shown only once.", markup=False)
            yield Static(self.created.key, id="secret-key", markup=False)
            yield Static("Clients send it as  Authorization: Bearer KEY", markup=False)
        yield Footer()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.created.key)
        self.notify("copied (where the terminal supports OSC 52)")


class ReasoningScreen(ModalScreen[str | None]):
    """Dismissed with the chosen format ("" for the box default), or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reasoning.cancel", tooltip="Close")]

    def __init__(self, key_name: str, current: str | None) -> None:
        super().__init__(classes="modal")
        self.key_name = key_name
        self.current = current or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="reasoning-dialog") as dialog:
            dialog.border_title = f"Reasoning format for {self.key_name}"
            yield Select(REASONING_CHOICES, value=self.current, allow_blank=False,
                         id="reasoning-select")  # fmt: skip
            yield Button("Save", id="reasoning-save", variant="primary")
        yield Footer()

    def on_button_pressed(self) -> None:
        self.dismiss(str(self.query_one("#reasoning-select", Select).value))

    def action_cancel(self) -> None:
        self.dismiss(None)
