"""Settings: what the daemon runs with (every setting, by section) and the file it reads.

Read-only: the daemon has no route that validates and saves settings yet; the screen says how
to change them (edit the file, `appliance config check`, restart).
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.client import calls
from appliance.ui.screens.base import ConsoleScreen


def flatten(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """`api.listen` = `0.0.0.0:8080`, in the order the daemon declares them."""
    rows: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, f"{name}.")
        else:
            shown = "default" if value is None or value == [] else str(value)
            rows.append((name, shown))
    return rows


class SettingsScreen(ConsoleScreen):
    MODE = "settings"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="settings.refresh", tooltip="Ask the daemon now"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static("", id="settings-file", markup=False)
        yield DataTable(id="settings", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#settings", DataTable).add_columns("setting", "value")

    def action_refresh(self) -> None:
        self._refresh()

    @work(exclusive=True, group="settings")
    async def _refresh(self) -> None:
        found = await self.poll(calls.settings())
        if found is None:
            return
        state = "" if found.config_file_exists else " (absent: defaults and APPLIANCE_* apply)"
        self.query_one("#settings-file", Static).update(
            f"Read from {found.config_file}{state}. To change: edit it, run "
            "`appliance config check`, then `systemctl restart ai-appliance`."
        )
        table = self.query_one("#settings", DataTable)
        table.clear()
        for name, value in flatten(found.settings):
            table.add_row(name, value, key=name)
