"""ApplianceApp: the thin Textual shell. Screens render; this class only polls the daemon."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from appliance.client import AsyncAdminClient
from appliance.errors import ApplianceError
from appliance.ui.screens.status import StatusScreen


class ApplianceApp(App[None]):
    TITLE = "AI appliance"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit", tooltip="Leave the management UI"),
        Binding("r", "refresh_status", "Refresh", id="refresh", tooltip="Ask the daemon now"),
    ]

    def __init__(self, admin_socket: Path, refresh_s: float = 2.0) -> None:
        super().__init__()
        self.admin_socket = admin_socket
        self.refresh_s = refresh_s
        self.client = AsyncAdminClient(admin_socket)
        self.status_screen = StatusScreen()

    async def on_mount(self) -> None:
        self.sub_title = str(self.admin_socket)
        # Wait for the screen to mount (its tables get their columns) before the first poll
        # can answer; otherwise a fast daemon fills a table that has no columns yet.
        await self.push_screen(self.status_screen)
        self.action_refresh_status()
        self.set_interval(self.refresh_s, self.action_refresh_status)

    def action_refresh_status(self) -> None:
        self._poll()

    @work(exclusive=True, group="status")
    async def _poll(self) -> None:
        try:
            status = await self.client.status()
        except ApplianceError as error:
            self.status_screen.show_unreachable(error.message)
            return
        self.status_screen.show_status(status)

    async def on_unmount(self) -> None:
        await self.client.aclose()
