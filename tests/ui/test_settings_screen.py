"""The settings screen shows what the daemon runs with and how to change it."""

from __future__ import annotations

from appliance.ui.app import ApplianceApp
from helpers.console import rows, settle, text
from helpers.daemon import Daemon


async def test_settings_show_the_daemons_values_and_the_file_to_edit(
    console_daemon: Daemon,
) -> None:
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(pilot, lambda: rows(app, "#settings"), "the settings")
        values = dict((row[0], row[1]) for row in rows(app, "#settings"))
        assert values["api.require_api_key"] == "True"
        assert values["api.listen"] == console_daemon.root_url.removeprefix("http://")
        assert values["engine.context_length"] == "4096"
        shown = text(app, "#settings-file")
        assert str(console_daemon.home / "config.toml") in shown and "absent" in shown
        assert "appliance config check" in shown
