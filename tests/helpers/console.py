"""Helpers for driving the console with Textual's Pilot: wait for what a screen shows, read it.

Test helper only; reads widgets the way a person reads the screen (rendered text, table rows).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Static


def text(app: App[None], selector: str) -> str:
    """What a Static shows, as plain text."""
    return str(app.screen.query_one(selector, Static).render())


def rows(app: App[None], selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def settle(
    pilot: Pilot[None], predicate: Callable[[], bool], what: str, timeout_s: float = 60.0
) -> None:
    """Wait (polling, not timing) until the screen shows `what`; fail with a readable reason."""
    for _ in range(int(timeout_s / 0.05)):
        await pilot.pause(0.05)
        try:
            if predicate():
                return
        except Exception:  # the screen may not have mounted the widget yet
            pass
    raise AssertionError(f"the console never showed {what}")


def modal_text(app: App[None]) -> str:
    """All the text of the dialog on top."""
    return "\n".join(str(w.render()) for w in app.screen.query(Static))


def set_up_before_start(home: Path) -> None:
    """Mark a box's first-boot wizard done before its daemon starts (so a console opens on the
    dashboard; tests/ui/test_wizard.py and the tmux test walk the wizard themselves): the
    marker the daemon's `POST /admin/setup` writes."""
    from appliance.api.admin.setup_routes import SETUP_FILE

    (home / SETUP_FILE).write_text('{"skipped": true}')
