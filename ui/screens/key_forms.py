"""The keys screen's dialogs: a new key's name, scope and reasoning format; the new secret,
shown once (copyable to the terminal's clipboard with OSC 52); a key's reasoning format; a
key's limits (requests per minute, tokens per day, streams at once, models)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from appliance.api.admin.protocol import KeyCreated
from appliance.records import KeyLimits

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


def limits_text(limits: KeyLimits) -> str:
    """One cell: `30/min · 100000 tok/day · 2 streams · smollm2`, or `none`."""
    parts = []
    if limits.requests_per_minute is not None:
        parts.append(f"{limits.requests_per_minute}/min")
    if limits.tokens_per_day is not None:
        parts.append(f"{limits.tokens_per_day} tok/day")
    if limits.max_streams is not None:
        parts.append(f"{limits.max_streams} streams")
    if limits.allowed_models is not None:
        parts.append(",".join(limits.allowed_models) or "no models")
    return " · ".join(parts) or "none"


_NUMBERS = [
    ("requests_per_minute", "Requests per minute:"),
    ("tokens_per_day", "Tokens per day (prompt + answer):"),
    ("max_streams", "Answers at once (streams):"),
]


class LimitsScreen(ModalScreen[KeyLimits | None]):
    """A key's limits; an empty field is no limit of that kind. Dismissed with the new limits,
    or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="limits.cancel", tooltip="Close")]

    def __init__(self, key_name: str, current: KeyLimits) -> None:
        super().__init__(classes="modal")
        self.key_name = key_name
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="limits-dialog") as dialog:
            dialog.border_title = f"Limits for {self.key_name}"
            dialog.border_subtitle = "empty: no limit · Enter saves · Esc closes"
            for field, label in _NUMBERS:
                value = getattr(self.current, field)
                yield Label(label)
                yield Input("" if value is None else str(value), id=f"limits-{field}",
                            placeholder="no limit")  # fmt: skip
            yield Label("Models it may use (comma-separated):")
            models = self.current.allowed_models
            yield Input(",".join(models) if models is not None else "", id="limits-models",
                        placeholder="every installed model")  # fmt: skip
            yield Static("", id="limits-error", markup=False)
            yield Button("Save", id="limits-save", variant="primary")
        yield Footer()

    def _answer(self) -> None:
        values: dict[str, int | None] = {}
        for field, label in _NUMBERS:
            text = self.query_one(f"#limits-{field}", Input).value.strip()
            if text and not (text.isdigit() and int(text) > 0):
                self.query_one("#limits-error", Static).update(
                    f"{label.rstrip(':')} must be a whole number above 0, or empty for no limit"
                )
                return
            values[field] = int(text) if text else None
        models = self.query_one("#limits-models", Input).value
        names = [name.strip() for name in models.split(",") if name.strip()]
        self.dismiss(KeyLimits(allowed_models=names or None, **values))

    def on_input_submitted(self) -> None:
        self._answer()

    def on_button_pressed(self) -> None:
        self._answer()

    def action_cancel(self) -> None:
        self.dismiss(None)
