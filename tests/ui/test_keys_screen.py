"""The keys screen: a key created in the console works on the LAN API, and stops working when
revoked there."""

from __future__ import annotations

import httpx

from appliance.ui.app import ApplianceApp
from helpers.console import rows, settle, text
from helpers.daemon import Daemon


async def test_a_created_key_is_shown_once_works_and_stops_working_when_revoked(
    console_daemon: Daemon,
) -> None:
    models_url = f"{console_daemon.base_url}/models"
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot, lambda: rows(app, "#keys"), "the key list")
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"office-laptop", "enter")
        await settle(pilot, lambda: app.screen.query("#secret-key"), "the new secret")
        secret = text(app, "#secret-key")
        assert secret.startswith("sk-")
        listed = httpx.get(models_url, headers={"Authorization": f"Bearer {secret}"})
        assert listed.status_code == 200
        await pilot.press("enter")
        await settle(pilot, lambda: any(r[0] == "office-laptop" for r in rows(app, "#keys")),
                     "the new key in the list")  # fmt: skip
        # The secret is not shown again: the list has only its prefix.
        assert all(secret not in " ".join(row) for row in rows(app, "#keys"))
        row = [r[0] for r in rows(app, "#keys")].index("office-laptop")
        app.screen.query_one("#keys").move_cursor(row=row)
        await pilot.press("x")
        await pilot.pause()
        assert "Revoke office-laptop" in text(app, "#confirm-question")
        await pilot.press("y")
        await settle(pilot, lambda: rows(app, "#keys")[row][-1] == "revoked", "revoked")
    refused = httpx.get(models_url, headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


async def test_limits_set_in_the_console_apply_to_the_key_at_once(console_daemon: Daemon) -> None:
    models_url = f"{console_daemon.base_url}/models"
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot, lambda: rows(app, "#keys"), "the key list")
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"night-script", "enter")
        await settle(pilot, lambda: app.screen.query("#secret-key"), "the new secret")
        secret = text(app, "#secret-key")
        await pilot.press("enter")
        await settle(pilot, lambda: any(r[0] == "night-script" for r in rows(app, "#keys")),
                     "the new key in the list")  # fmt: skip
        row = [r[0] for r in rows(app, "#keys")].index("night-script")
        app.screen.query_one("#keys").move_cursor(row=row)
        assert rows(app, "#keys")[row][4] == "none"
        await pilot.press("l")
        await settle(pilot, lambda: app.screen.query("#limits-dialog"), "the limits form")
        # A wrong number is explained in the form, and nothing is sent.
        await pilot.press(*"abc", "enter")
        assert "Requests per minute must be a whole number above 0" in text(app, "#limits-error")
        await pilot.press(*["backspace"] * 3, *"30", "tab", "tab", *"2", "tab", *"other-model")
        await pilot.press("enter")
        await settle(pilot, lambda: rows(app, "#keys")[row][4] != "none", "the new limits")
        assert rows(app, "#keys")[row][4] == "30/min · 2 streams · other-model"
    # The key now sees only the model it may use: smollm2 is gone from its listing.
    listed = httpx.get(models_url, headers={"Authorization": f"Bearer {secret}"}).json()
    assert listed["data"] == []
