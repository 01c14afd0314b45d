"""ConsoleScreen: what every screen shares — the nav line, the daemon banner, the footer, and
one way to call the daemon from a worker (errors shown as the daemon worded them).

Screens subclass it, set `MODE`, and yield their body from `compose_body`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from appliance.client.calls import Call
from appliance.errors import ApplianceError, DaemonUnreachable
from appliance.ui.widgets.banner import DaemonBanner
from appliance.ui.widgets.nav import NavBar

if TYPE_CHECKING:
    from appliance.client import AsyncAdminClient
    from appliance.ui.app import ApplianceApp

T = TypeVar("T")


class ConsoleScreen(Screen[None]):
    MODE = ""
    REFRESH_S: float | None = None
    """Seconds between refreshes while the screen is shown; None: only on show and on `r`."""

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        yield DaemonBanner()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def console(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    @property
    def client(self) -> AsyncAdminClient:
        return self.console.client

    def on_mount(self) -> None:
        if self.REFRESH_S:
            every = min(self.REFRESH_S, self.console.refresh_s)
            self.set_interval(every, self._refresh_if_shown)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def _refresh_if_shown(self) -> None:
        if self.is_current:
            self.action_refresh()

    def action_refresh(self) -> None:
        """Fetch what the screen shows (in a worker); subclasses override."""

    async def _run(self, call: Call[T] | Awaitable[T]) -> T:
        # A Call becomes a request only here, so a refresh cancelled before it starts leaves no
        # un-awaited coroutine behind.
        return await (self.client.run(call) if isinstance(call, Call) else call)

    @property
    def taken_down(self) -> bool:
        """The screen is being removed (the console quits): its widgets may be gone already."""
        # Textual removes a screen's widgets before it cancels the screen's workers, and hides
        # (`display`) a node from the moment its removal starts.
        return not self.is_running or not self.display

    async def poll(self, call: Call[T] | Awaitable[T]) -> T | None:
        """For refreshes: a dead daemon goes to the banner (the app retries), other errors to
        the modal. None too when the screen was taken down while the daemon answered, so a
        refresh in flight when the administrator quits ends quietly, without a traceback."""
        try:
            result = await self._run(call)
        except DaemonUnreachable as error:
            self.console.daemon_error = error.message
        except ApplianceError as error:
            self.console.show_error(error)
        else:
            return None if self.taken_down else result
        return None

    async def act(self, call: Call[T] | Awaitable[T]) -> T | None:
        """For an administrator's action: any failure opens the error modal, worded by the
        daemon (or by the client when the daemon cannot be reached)."""
        try:
            return await self._run(call)
        except ApplianceError as error:
            self.console.show_error(error)
        return None
