"""Hooks and logs: a failing boot hook with its exit code and output, and the daemon's log with
a level filter."""

from __future__ import annotations

from textual.widgets import RichLog

from appliance.ui.app import ApplianceApp
from helpers.console import rows, settle, text
from helpers.daemon import Daemon


def _log_lines(app: ApplianceApp) -> list[str]:
    return [line.text for line in app.screen.query_one("#log", RichLog).lines]


async def test_a_failed_hook_shows_its_exit_code_and_output(console_daemon: Daemon) -> None:
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot, lambda: rows(app, "#hooks")[0][1] == "boot", "the boot hook run")
        [run] = [r for r in rows(app, "#hooks") if r[2] == "50-check-firmware"]
        assert run[3] == "exit 3"
        app.screen.query_one("#hooks").focus()
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen.query("#text-body"), "the hook's output")
        output = text(app, "#text-body")
        assert "exit code 3" in output
        assert "firmware 7.1 is older than the 7.3 this driver needs" in output
        await pilot.press("escape")
        await pilot.press("1")
        await settle(pilot, lambda: "50-check-firmware failed" in text(app, "#alerts"),
                     "the failed hook among the alerts")  # fmt: skip


async def test_the_log_tail_follows_the_daemon_and_filters_by_level(
    console_daemon: Daemon,
) -> None:
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await settle(pilot, lambda: any("Started server process" in x for x in _log_lines(app)),
                     "the daemon's start in the log")  # fmt: skip
        assert any(" INFO " in line for line in _log_lines(app))
        await pilot.press("f", "f")  # INFO -> WARNING -> ERROR
        await settle(pilot, lambda: "ERROR and above" in text(app, "#log-title"), "ERROR level")
        await pilot.pause(1.0)
        assert not any(" INFO " in line for line in _log_lines(app)), "INFO lines are filtered"
