"""The settings screen shows what the daemon runs with, changes what the console may change
(checked by the daemon first), and offers the restart that applies it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.ui.app import ApplianceApp
from helpers.console import modal_text, rows, set_up_before_start, settle, text
from helpers.daemon import Daemon, start_daemon, stop_daemon


@pytest.fixture
def own_daemon(tmp_path: Path) -> Iterator[Daemon]:
    # Restarted by the test: not the session's shared console daemon.
    set_up_before_start(tmp_path)
    daemon = start_daemon(tmp_path, wait_ready=False)
    yield daemon
    stop_daemon(daemon)


async def test_settings_show_the_daemons_values_and_the_file_to_edit(
    console_daemon: Daemon,
) -> None:
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(pilot, lambda: rows(app, "#settings"), "the settings")
        values = dict((row[0], row[1]) for row in rows(app, "#settings"))
        assert values["api.require_api_key"] == "true"
        assert values["api.listen"] == console_daemon.root_url.removeprefix("http://")
        assert values["engine.context_length"] == "4096"
        shown = text(app, "#settings-file")
        assert str(console_daemon.home / "config.toml") in shown and "absent" in shown
        assert "appliance config check" in shown
        editable = {row[0]: row for row in rows(app, "#settings-editable")}
        assert editable["api.listen"][2] == "environment (wins)"
        assert editable["engine.keep_alive_s"][1:3] == ["300.0", "default"]


def keep_alive_row(app: ApplianceApp) -> list[str]:
    return next(row for row in rows(app, "#settings-editable") if row[0] == "engine.keep_alive_s")


async def test_a_change_is_checked_saved_and_applied_by_the_offered_restart(
    own_daemon: Daemon,
) -> None:
    app = ApplianceApp(own_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(pilot, lambda: keep_alive_row(app), "the editable settings")
        table_keys = [row[0] for row in rows(app, "#settings-editable")]
        await pilot.press(*["down"] * table_keys.index("engine.keep_alive_s"))
        # A wrong value: the daemon's own words, and nothing saved.
        await pilot.press("e", *"-5", "enter")
        await settle(pilot, lambda: "not saved" in modal_text(app), "the daemon's refusal")
        assert "greater than or equal to 0" in modal_text(app)
        await pilot.press("escape")
        assert not (own_daemon.home / "settings.toml").exists()
        # A good one: saved, then the restart it needs is offered and taken.
        await pilot.press("e", *(["backspace"] * 6), *"60", "enter")
        await settle(pilot, lambda: "Restart now?" in modal_text(app), "the restart offer")
        assert "engine.keep_alive_s takes effect when the daemon restarts" in modal_text(app)
        await pilot.press("y")
        await settle(
            pilot,
            lambda: keep_alive_row(app)[1:] == ["60.0", "console", ""],
            "the daemon running with the new value",
        )
        assert text(app, "#settings-pending") == "The daemon runs with every saved setting."
    assert own_daemon.process.poll() is None
    assert "received a restart request" in own_daemon.log()
