"""NavBar: the top line, naming the screens with their keys and marking the current one."""

from __future__ import annotations

from textual.widgets import Static

SCREENS = (
    ("1", "dashboard", "Dashboard"),
    ("2", "models", "Models"),
    ("3", "keys", "Keys"),
    ("4", "chat", "Chat"),
    ("5", "logs", "Hooks & logs"),
    ("6", "settings", "Settings"),
)


class NavBar(Static):
    DEFAULT_CSS = """
    NavBar {
        background: $panel;
        color: $text-muted;
        height: 1;
        padding: 0 1;
    }
    """

    def __init__(self, current: str) -> None:
        parts = []
        for key, mode, title in SCREENS:
            label = f"{key} {title}"
            parts.append(f"[reverse b] {label} [/]" if mode == current else f" {label} ")
        super().__init__("".join(parts))
