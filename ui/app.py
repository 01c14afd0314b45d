"""ApplianceApp: the console's thin shell — the screens as modes, the global keys, the daemon
watch that drives the banner, the error modal and the command palette. Screens do the rest.

May import `appliance.client` (and the records and admin protocol it returns) only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from appliance.api.admin.protocol import DaemonStatus
from appliance.client import AsyncAdminClient
from appliance.errors import ApplianceError, DaemonUnreachable
from appliance.ui.screens.chat import ChatScreen
from appliance.ui.screens.dashboard import DashboardScreen
from appliance.ui.screens.help import HelpScreen
from appliance.ui.screens.keys import KeysScreen
from appliance.ui.screens.logs import LogsScreen
from appliance.ui.screens.models import ModelsScreen
from appliance.ui.screens.settings import SettingsScreen
from appliance.ui.screens.wizard import WizardScreen
from appliance.ui.widgets.modals import ErrorModal
from appliance.ui.widgets.nav import SCREENS

STATUS_TIMEOUT_S = 5.0
"""A daemon that takes longer than this to say how it is counts as not answering (banner)."""


class ApplianceApp(App[None]):
    TITLE = "AI appliance"
    CSS_PATH = "app.tcss"
    MODES = {
        "dashboard": DashboardScreen,
        "models": ModelsScreen,
        "keys": KeysScreen,
        "chat": ChatScreen,
        "logs": LogsScreen,
        "settings": SettingsScreen,
    }
    BINDINGS = [
        *(
            Binding(
                key,
                f"switch_mode('{mode}')",
                title,
                id=f"go.{mode}",
                show=False,
                tooltip=f"Show the {title.lower()} screen",
            )
            for key, mode, title in SCREENS
        ),
        Binding("question_mark,f1", "help", "Help", id="help", tooltip="List the keys"),
        Binding("q", "quit", "Quit", id="quit", tooltip="Leave the console"),
    ]

    daemon_error: reactive[str] = reactive("")
    """Why the daemon cannot be reached now; empty while it answers. The banner shows it."""

    def __init__(
        self, admin_socket: Path, refresh_s: float = 2.0, client: AsyncAdminClient | None = None
    ) -> None:
        super().__init__()
        self.admin_socket = admin_socket
        self.refresh_s = refresh_s
        self.client = client or AsyncAdminClient(admin_socket)
        self.status: DaemonStatus | None = None
        self._polling = False
        self._wizard_offered = False

    async def on_mount(self) -> None:
        self.sub_title = str(self.admin_socket)
        await self.switch_mode("dashboard")
        self.watch_daemon()
        self.set_interval(self.refresh_s, self.watch_daemon)

    def watch_daemon(self) -> None:
        # One poll at a time: a hung daemon must time out into the banner, not be re-asked.
        if not self._polling:
            self._polling = True
            self._poll()

    @work(group="daemon")
    async def _poll(self) -> None:
        try:
            self.status = await self.client.status(timeout_s=STATUS_TIMEOUT_S)
        except DaemonUnreachable as error:
            self.daemon_error = error.message
        except ApplianceError as error:
            self.daemon_error = f"the daemon answered with an error: {error.message}"
        else:
            if self.daemon_error:
                self.daemon_error = ""
                self.screen.run_worker(self._after_reconnect(), exclusive=False)
            if not self.status.setup_complete and not self._wizard_offered:
                # Once per console session: Esc closes it until the console is opened again.
                self._wizard_offered = True
                self.push_screen(WizardScreen(self.status, self.client))
        finally:
            self._polling = False

    async def _after_reconnect(self) -> None:
        # The screen was showing stale or empty data while the daemon was away.
        await self.screen.run_action("refresh")

    def show_error(self, error: ApplianceError) -> None:
        self.push_screen(ErrorModal(error.title, error.message))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for _, mode, title in SCREENS:
            yield SystemCommand(f"Go to {title}", f"Show the {title} screen", self._go(mode))
        for mode, screen_class in self.MODES.items():
            for title, help_text, action in getattr(screen_class, "PALETTE", []):
                yield SystemCommand(title, help_text, self._go(mode, action))

    def _go(self, mode: str, action: str | None = None):  # type: ignore[no-untyped-def]
        async def go() -> None:
            await self.switch_mode(mode)
            if action:
                await self.screen.run_action(action)

        return go

    async def on_unmount(self) -> None:
        await self.client.aclose()
