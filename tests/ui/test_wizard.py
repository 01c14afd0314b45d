"""The first-boot wizard, walked with the keyboard against a fresh real daemon: hardware, the
model, the first admin key, exposure and TLS, a test prompt; then the box counts as set up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.ui.app import ApplianceApp
from appliance.ui.screens.wizard import WizardScreen
from helpers.console import modal_text, settle, text
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon


@pytest.fixture
def fresh_box(tmp_path: Path, embedded_model: Path) -> Iterator[Daemon]:
    run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smollm2")
    daemon = start_daemon(tmp_path)
    yield daemon
    stop_daemon(daemon)


def status(daemon: Daemon) -> dict:
    return json.loads(run_cli(daemon.home, "status", "--json").stdout)


async def test_a_fresh_box_walks_the_wizard_and_is_set_up_after_it(fresh_box: Daemon) -> None:
    assert status(fresh_box)["setup_complete"] is False
    app = ApplianceApp(fresh_box.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, WizardScreen), "the wizard")
        assert "1/5 Hardware found" in text(app, "#wizard-title")
        assert "cpu0:" in text(app, "#hardware")
        await pilot.press("enter")
        models = app.screen.query_one("#wizard-models")
        await settle(pilot, lambda: "smollm2" in str(models.get_row_at(0)), "the installed model")
        await pilot.press("enter")  # picks smollm2
        await settle(pilot, lambda: "3/5" in text(app, "#wizard-title"), "the key step")
        await pilot.press("c")
        await settle(pilot, lambda: app.screen.query("#secret-key"), "the new admin key")
        secret = text(app, "#secret-key")
        await pilot.press("enter")
        await settle(pilot, lambda: "Created the admin key first-admin" in text(app, "#key"),
                     "the key noted")  # fmt: skip
        await pilot.press("n")
        await settle(pilot, lambda: "4/5" in text(app, "#wizard-title"), "the exposure step")
        await pilot.press("down", "down", "enter")  # this box only
        await pilot.press("tab", "down", "down", "enter")  # HTTPS with a certificate of its own
        await pilot.press("n")
        await settle(pilot, lambda: "Enter: finish" in text(app, "#test"), "the test answer",
                     timeout_s=180)  # fmt: skip
        shown = text(app, "#test")
        assert "A: " in shown and "a sane answer" in shown, shown
        # The tests' daemon takes its address from APPLIANCE_LISTEN, as a drop-in would.
        assert "environment wins over api.listen" in shown
        assert "a restart applies the saved settings" in shown  # HTTPS needs a restart
        started = status(fresh_box)["started_at"]
        await pilot.press("enter")
        await settle(pilot, lambda: "Restart now?" in modal_text(app), "the restart offer")
        assert "tls.mode takes effect when the daemon restarts" in modal_text(app)
        await pilot.press("y")
        await settle(pilot, lambda: not isinstance(app.screen, WizardScreen), "the dashboard")
    for _ in range(300):
        try:
            after = status(fresh_box)
            if after["started_at"] > started:
                break
        except AssertionError:
            pass  # restarting: the socket is away for a moment
        await asyncio.sleep(0.2)
    assert after["setup_complete"] is True
    assert after["tls_mode"] == "self-signed" and after["tls_fingerprint"]
    record = json.loads((fresh_box.home / "setup.json").read_text())
    assert record["summary"]["default_model"] == "smollm2"
    assert record["summary"]["api.listen"].startswith("127.0.0.1:")
    assert record["summary"]["admin_key"] == "first-admin"
    saved = (fresh_box.home / "settings.toml").read_text()
    assert 'default_model = "smollm2"' in saved and 'mode = "self-signed"' in saved
    # The admin key works on the LAN API, now over HTTPS.
    url = fresh_box.base_url.replace("http://", "https://")
    listed = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {secret}"},
                       verify=False)  # fmt: skip
    assert listed.status_code == 200
    # A console opened again goes straight to the dashboard.
    again = ApplianceApp(fresh_box.admin_socket, refresh_s=0.5)
    async with again.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: "running" in text(again, "#service"), "the dashboard")
        await pilot.pause(1.0)
        assert not isinstance(again.screen, WizardScreen)


async def test_skipping_the_wizard_marks_the_box_set_up(fresh_box: Daemon) -> None:
    app = ApplianceApp(fresh_box.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, WizardScreen), "the wizard")
        await pilot.press("s")
        await settle(pilot, lambda: "not offer it again" in modal_text(app), "the question")
        await pilot.press("y")
        await settle(pilot, lambda: not isinstance(app.screen, WizardScreen), "the dashboard")
    assert status(fresh_box)["setup_complete"] is True
    assert json.loads((fresh_box.home / "setup.json").read_text())["skipped"] is True
