"""DaemonBanner: the line that says the daemon is down or slow, and that the console retries.

Watches the app's `daemon_error`; hidden while the daemon answers.
"""

from __future__ import annotations

from textual.widgets import Static


class DaemonBanner(Static):
    DEFAULT_CSS = """
    DaemonBanner {
        display: none;
        background: $error;
        color: $text;
        text-style: bold;
        padding: 0 1;
    }
    DaemonBanner.down { display: block; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "daemon_error", self._show)

    def _show(self, message: str) -> None:
        self.set_class(bool(message), "down")
        if message:
            self.update(f"{message} — retrying")
