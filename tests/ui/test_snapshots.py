"""Snapshots of every console screen at 80x24 (an SSH session's default) and 160x48, drawn
from a real daemon's recorded answers (tests/fixtures/console/daemon.json), so each run draws
the same screen. Update after an intended change with `pytest --snapshot-update tests/ui`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from appliance.client import AsyncAdminClient
from appliance.ui.app import ApplianceApp
from helpers.recorded_admin import replay

RECORDING = Path(__file__).parents[1] / "fixtures" / "console" / "daemon.json"
SOCKET = Path("/run/ai-appliance/admin.sock")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Key creation dates and log times are shown in local time.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _app() -> ApplianceApp:
    recording = json.loads(RECORDING.read_text())
    client = AsyncAdminClient(SOCKET, transport=replay(recording))
    return ApplianceApp(SOCKET, refresh_s=60.0, client=client)


async def _settled(pilot: Pilot[None]) -> None:
    # Twice: a finished refresh can start a layout that schedules a scroll (the log tail).
    for _ in range(2):
        await pilot.app.workers.wait_for_complete()
        await pilot.wait_for_scheduled_animations()
        # A text field's cursor blinks every half second: drawn steady, so the picture does
        # not depend on how long the steps took (a slow box caught it both ways).
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()


SCREENS = {
    "dashboard": [],
    "models": ["2"],
    "catalog": ["2", "t"],
    "keys": ["3"],
    "chat": ["4"],
    "logs": ["5"],
    "settings": ["6"],
}


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_each_screen_fits_the_terminal(snap_compare, screen: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """The administrator opens the console and goes to each screen."""

    async def go(pilot: Pilot[None]) -> None:
        await _settled(pilot)
        for key in SCREENS[screen]:
            await pilot.press(key)
            await _settled(pilot)
        for log in pilot.app.screen.query("#log"):
            # The tail follows the end; where it stands mid-layout depends on timing.
            log.scroll_end(animate=False, immediate=True)
            await _settled(pilot)

    assert snap_compare(_app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize(
    "keys",
    [["question_mark"], ["2", "enter"], ["2", "i"], ["3", "n"]],
    ids=["help", "model-details", "import-dialog", "new-key-dialog"],
)
def test_dialogs_fit_an_ssh_terminal(snap_compare, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The administrator opens a dialog on an 80x24 terminal."""

    async def go(pilot: Pilot[None]) -> None:
        await _settled(pilot)
        for key in keys:
            await pilot.press(key)
            await _settled(pilot)

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=go)
