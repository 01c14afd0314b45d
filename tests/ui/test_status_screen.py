"""The TUI's status screen, driven with Textual's Pilot against the real daemon."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from appliance.ui.app import ApplianceApp
from helpers.daemon import Daemon


def _text(app: ApplianceApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _rows(app: ApplianceApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def _settle(pilot, app: ApplianceApp, predicate) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        await pilot.pause(0.05)
        if predicate():
            return
    raise AssertionError(f"screen never settled: {_text(app, '#connection')}")


async def test_status_screen_shows_the_url_devices_and_loaded_model(daemon: Daemon) -> None:
    app = ApplianceApp(daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(120, 30)) as pilot:
        await _settle(pilot, app, lambda: _rows(app, "#models"))
        assert "Connected" in _text(app, "#connection")
        assert daemon.base_url in _text(app, "#summary")
        assert "smollm2" in _text(app, "#summary")
        [model] = _rows(app, "#models")
        assert model[:3] == ["smollm2", "ready", "llama.cpp"]
        assert _rows(app, "#devices")[0][:2] == ["cpu0", "cpu"]


async def test_status_screen_says_clearly_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    socket_path = tmp_path / "admin.sock"
    app = ApplianceApp(socket_path, refresh_s=0.5)
    async with app.run_test(size=(120, 30)) as pilot:
        await _settle(pilot, app, lambda: "not running" in _text(app, "#connection"))
        text = _text(app, "#connection")
        assert str(socket_path) in text
        assert "appliance serve" in text
        assert _rows(app, "#models") == []


async def test_pressing_q_quits(tmp_path: Path) -> None:
    app = ApplianceApp(tmp_path / "admin.sock")
    async with app.run_test() as pilot:
        await pilot.press("q")
    assert app.return_code == 0
