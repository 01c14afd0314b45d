"""Settings: what the daemon runs with, and the settings the console may change.

Editing sends the change to the daemon, which validates it against the whole configuration
and saves it (in `<state>/settings.toml`; the file in /etc stays the package's); a change that
needs a restart says so and offers it. Everything else is shown read-only, with the way to
change it (edit the file as root, `appliance config check`, restart).
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.api.admin.protocol import DaemonSettings, EditableSetting
from appliance.client import calls
from appliance.ui.screens.base import ConsoleScreen
from appliance.ui.widgets.modals import ConfirmModal, PromptModal

SOURCES = {
    "default": "default",
    "file": "config file",
    "console": "console",
    "environment": "environment (wins)",
}


def flatten(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """`api.listen` = `0.0.0.0:8080`, in the order the daemon declares them."""
    rows: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, f"{name}.")
        else:
            rows.append((name, shown(value)))
    return rows


def shown(value: Any) -> str:
    if value is None or value == []:
        return "default"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SettingsScreen(ConsoleScreen):
    MODE = "settings"
    BINDINGS = [
        Binding("e,enter", "edit", "Change", id="settings.edit",
                tooltip="Change the selected setting (the daemon checks it first)"),
        Binding("u", "unset", "Use file's", id="settings.unset",
                tooltip="Drop the console's change: the config file's value applies again"),
        Binding("R", "restart", "Restart", id="settings.restart",
                tooltip="Drain and restart the daemon so saved changes apply"),
        Binding("r", "refresh", "Refresh", id="settings.refresh", tooltip="Ask the daemon now"),
    ]  # fmt: skip
    PALETTE = [
        ("Change a setting", "Checked by the daemon before it is saved", "edit"),
        ("Restart the daemon", "Answers in progress may finish first", "restart"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.editable: dict[str, EditableSetting] = {}

    def compose_body(self) -> ComposeResult:
        yield Static("", id="settings-file", markup=False)
        yield DataTable(id="settings-editable", cursor_type="row", zebra_stripes=True)
        yield Static("", id="settings-pending", markup=False)
        yield DataTable(id="settings", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#settings-editable", DataTable).add_columns(
            "setting", "value", "from", "next start"
        )
        self.query_one("#settings", DataTable).add_columns("every setting", "value")

    def action_refresh(self) -> None:
        self._refresh()

    @work(exclusive=True, group="settings")
    async def _refresh(self) -> None:
        found = await self.poll(calls.settings())
        if found is not None:
            self.show(found)

    def show(self, found: DaemonSettings) -> None:
        state = "" if found.config_file_exists else " (absent: defaults apply)"
        self.query_one("#settings-file", Static).update(
            f"File: {found.config_file}{state}. Below, e changes a setting; the others: edit "
            "the file as root, `appliance config check`, restart."
        )
        self.editable = {row.key: row for row in found.editable}
        table = self.query_one("#settings-editable", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in found.editable:
            upcoming = shown(row.saved) if row.key in found.restart_pending else ""
            table.add_row(row.key, shown(row.value), SOURCES[row.source], upcoming, key=row.key)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        pending = found.restart_pending
        self.query_one("#settings-pending", Static).update(
            f"Saved, applied at the next start: {', '.join(pending)}. R restarts now."
            if pending
            else "The daemon runs with every saved setting."
        )
        every = self.query_one("#settings", DataTable)
        every.clear()
        for name, value in flatten(found.settings):
            every.add_row(name, value, key=name)

    def _selected(self) -> EditableSetting | None:
        table = self.query_one("#settings-editable", DataTable)
        if table.row_count == 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.editable.get(str(row_key.value))

    def action_edit(self) -> None:
        row = self._selected()
        if row is None:
            return
        current = row.saved if row.saved is not None else row.value
        value = "" if current is None else shown(current)

        def answered(text: str | None) -> None:
            if text is not None and text != value:
                self._save(row.key, text)

        prompt = PromptModal(
            f"Change {row.key}", row.meaning, value=value, placeholder="empty: the default"
        )
        self.app.push_screen(prompt, answered)

    def action_unset(self) -> None:
        row = self._selected()
        if row is not None and row.source == "console":
            self._save(row.key, None)

    @work(exclusive=True, group="settings-action")
    async def _save(self, key: str, value: str | None) -> None:
        saved = await self.act(calls.change_settings({key: value}))
        if saved is None:
            return
        for name in saved.overridden_by_environment:
            self.notify(
                f"saved, but an APPLIANCE_* variable in the daemon's environment wins over {name}",
                title="Settings", severity="warning",
            )  # fmt: skip
        self._refresh()
        if saved.restart_required:
            question = (
                f"Saved. {', '.join(saved.restart_required)} takes effect when the daemon "
                "restarts. Restart now? Answers in progress may finish first."
            )
            self.app.push_screen(ConfirmModal("Restart needed", question), self._restart_if)
        else:
            self.notify("saved; the daemon already runs with it", title="Settings")

    def action_restart(self) -> None:
        question = "Restart the daemon now? Answers in progress may finish first."
        self.app.push_screen(ConfirmModal("Restart the daemon", question), self._restart_if)

    def _restart_if(self, yes: bool | None) -> None:
        if yes:
            self._restart()

    @work(exclusive=True, group="settings-action")
    async def _restart(self) -> None:
        answer = await self.act(calls.restart())
        if answer is not None:
            self.notify(answer.message, title="Settings")
