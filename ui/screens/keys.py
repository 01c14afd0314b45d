"""Keys: the API keys (name, prefix, scope, reasoning format, limits, last use); create one (its
secret shown once), change its reasoning format or limits, revoke it (confirmed)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.api.admin.protocol import ApiKeyPublic
from appliance.client import calls
from appliance.records import KeyLimits
from appliance.ui.format import clock_short
from appliance.ui.screens.base import ConsoleScreen
from appliance.ui.screens.key_forms import (
    LimitsScreen,
    NewKeyScreen,
    ReasoningScreen,
    SecretScreen,
    limits_text,
)
from appliance.ui.widgets.modals import ConfirmModal


class KeysScreen(ConsoleScreen):
    MODE = "keys"
    BINDINGS = [
        Binding("n", "new_key", "New key", id="keys.new", tooltip="Create a key (shown once)"),
        Binding("f", "reasoning", "Reasoning", id="keys.reasoning",
                tooltip="Where answers to this key put reasoning text"),
        Binding("l", "limits", "Limits", id="keys.limits",
                tooltip="Requests per minute, tokens per day, streams, models"),
        Binding("x,delete", "revoke", "Revoke", id="keys.revoke",
                tooltip="Revoke the selected key (asks first)"),
        Binding("r", "refresh", "Refresh", id="keys.refresh", tooltip="Ask the daemon now"),
    ]  # fmt: skip
    PALETTE = [
        ("Create an API key", "Shown once, stored hashed", "new_key"),
        ("Revoke the selected API key", "Asks first", "revoke"),
        ("Change a key's reasoning format", "deepseek, ollama, vllm or none", "reasoning"),
        ("Set a key's limits", "Per minute, per day, streams at once, models", "limits"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, ApiKeyPublic] = {}

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
        yield Static("", id="keys-note", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#keys", DataTable).add_columns(
            "name", "prefix", "scope", "reasoning", "limits", "created", "last used", "state"
        )

    def action_refresh(self) -> None:
        self._refresh()

    @work(exclusive=True, group="keys")
    async def _refresh(self) -> None:
        found = await self.poll(calls.keys())
        if found is None:
            return
        self.keys = {str(k.id): k for k in found}
        table = self.query_one("#keys", DataTable)
        table.clear()
        for key in found:
            table.add_row(
                key.name, key.prefix, key.scope, key.reasoning_format or "default",
                limits_text(key.limits), clock_short(key.created_at), clock_short(key.last_used_at),
                "revoked" if key.revoked else "active", key=str(key.id),
            )  # fmt: skip
        active = sum(not k.revoked for k in found)
        self.query_one("#keys-note", Static).update(
            f"{active} active key(s). LAN clients send one as 'Authorization: Bearer KEY'."
        )

    def _selected(self) -> ApiKeyPublic | None:
        table = self.query_one("#keys", DataTable)
        if table.row_count == 0:
            return None
        return self.keys.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_new_key(self) -> None:
        def answered(form: tuple[str, str, str | None] | None) -> None:
            if form:
                self._create(*form)

        self.app.push_screen(NewKeyScreen(classes="modal"), answered)

    @work(exclusive=True, group="keys-action")
    async def _create(self, name: str, scope: str, reasoning: str | None) -> None:
        created = await self.act(calls.create_key(name or None, scope, reasoning))
        if created is not None:
            self.app.push_screen(SecretScreen(created))
        self._refresh()

    def action_revoke(self) -> None:
        key = self._selected()
        if key is None or key.revoked:
            return
        question = f"Revoke {key.name} ({key.prefix}…)? Clients using it are refused at once."

        def answered(yes: bool | None) -> None:
            if yes:
                self._revoke(str(key.id))

        self.app.push_screen(ConfirmModal("Revoke API key", question), answered)

    @work(exclusive=True, group="keys-action")
    async def _revoke(self, key_id: str) -> None:
        revoked = await self.act(calls.revoke_key(key_id))
        if revoked is not None:
            self.notify(f"{revoked.name} revoked", title="Keys")
        self._refresh()

    def action_reasoning(self) -> None:
        key = self._selected()
        if key is None:
            return

        def answered(choice: str | None) -> None:
            if choice is not None:
                self._set_reasoning(str(key.id), choice or None)

        self.app.push_screen(ReasoningScreen(key.name, key.reasoning_format), answered)

    @work(exclusive=True, group="keys-action")
    async def _set_reasoning(self, key_id: str, choice: str | None) -> None:
        await self.act(calls.update_key(key_id, choice))
        self._refresh()

    def action_limits(self) -> None:
        key = self._selected()
        if key is None or key.revoked:
            return

        def answered(limits: KeyLimits | None) -> None:
            if limits is not None:
                self._set_limits(str(key.id), limits)

        self.app.push_screen(LimitsScreen(key.name, key.limits), answered)

    @work(exclusive=True, group="keys-action")
    async def _set_limits(self, key_id: str, limits: KeyLimits) -> None:
        changed = await self.act(calls.set_key_limits(key_id, limits))
        if changed is not None:
            self.notify(f"{changed.name}: limits {limits_text(changed.limits)}", title="Keys")
        self._refresh()
