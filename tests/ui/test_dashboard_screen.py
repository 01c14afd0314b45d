"""The console's dashboard, driven with Textual's Pilot against the real daemon."""

from __future__ import annotations

import socket
from pathlib import Path

from textual.widgets import Sparkline

from appliance.ui.app import ApplianceApp
from appliance.ui.widgets.banner import DaemonBanner
from helpers.console import rows, set_up_before_start, settle, text
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon


async def test_dashboard_shows_the_url_the_device_with_history_and_the_loaded_model(
    daemon: Daemon,
) -> None:
    app = ApplianceApp(daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: rows(app, "#loaded"), "the loaded model")
        assert "running" in text(app, "#service")
        assert daemon.base_url in text(app, "#service")
        assert "Default model: smollm2" in text(app, "#service")
        assert "RAM" in text(app, "#host") and "disk" in text(app, "#host")
        assert "llama.cpp" in text(app, "#runtime")
        [model] = rows(app, "#loaded")
        assert model[:3] == ["smollm2", "ready", "cpu0/CPU"]
        assert "cpu0" in text(app, "#device-cpu0 .device-title")
        # The telemetry loop has sampled at least once: the sparkline has something to draw.
        await settle(
            pilot,
            lambda: len(app.screen.query_one("#device-cpu0 .mem-history", Sparkline).data) > 0,
            "the memory history of cpu0",
        )
        assert not app.screen.query_one(DaemonBanner).display
        await pilot.press("w")
        await settle(pilot, lambda: app.screen.query("#text-body"), "why this CPU variant")
        assert " chosen" in text(app, "#text-body"), "the self-test's verdicts, the choice marked"


async def test_a_dead_daemon_shows_a_banner_and_the_console_reconnects_when_it_starts(
    tmp_path: Path,
) -> None:
    app = ApplianceApp(tmp_path / "admin.sock", refresh_s=0.3)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.screen.query_one(DaemonBanner).display, "the banner")
        banner = text(app, "DaemonBanner")
        assert "not running" in banner and str(tmp_path / "admin.sock") in banner
        assert "retrying" in banner
        set_up_before_start(tmp_path)
        daemon = start_daemon(tmp_path, wait_ready=False)
        try:
            await settle(pilot, lambda: not app.screen.query_one(DaemonBanner).display,
                         "the banner gone once the daemon answers")  # fmt: skip
            await settle(pilot, lambda: daemon.base_url in text(app, "#service"), "the URL")
        finally:
            stop_daemon(daemon)


async def test_a_daemon_that_does_not_answer_shows_a_banner_and_the_console_stays_usable(
    tmp_path: Path,
) -> None:
    # A socket that accepts connections (the kernel's backlog) but never answers: a hung daemon.
    path = tmp_path / "admin.sock"
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(path))
    hung.listen(64)
    try:
        app = ApplianceApp(path, refresh_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("2")
            await pilot.pause()
            assert app.current_mode == "models", "keys work while the daemon hangs"
            await settle(pilot, lambda: app.screen.query_one(DaemonBanner).display, "the banner")
            assert "did not answer in time" in text(app, "DaemonBanner")
    finally:
        hung.close()


async def test_the_number_keys_switch_screens_and_q_quits(daemon: Daemon) -> None:
    app = ApplianceApp(daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, mode in [("2", "models"), ("3", "keys"), ("5", "logs"), ("1", "dashboard")]:
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Refresh: Ask the daemon now" in text(app, "#help-text")
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0


async def test_the_dashboard_shows_upstream_servers_with_their_health_once_one_is_added(
    tmp_path: Path,
) -> None:
    set_up_before_start(tmp_path)
    daemon = start_daemon(tmp_path, wait_ready=False)
    try:
        app = ApplianceApp(daemon.admin_socket, refresh_s=0.3)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, lambda: daemon.base_url in text(app, "#service"), "the URL")
            assert not app.screen.query_one("#upstreams").display
            # Nothing listens on port 9 (discard) on loopback: the server is down.
            run_cli(tmp_path, "upstream", "add", "big-r1", "http://127.0.0.1:9/v1")
            await settle(pilot, lambda: rows(app, "#upstreams"), "the upstream row")
            [row] = rows(app, "#upstreams")
            assert row[:3] == ["big-r1", "http://127.0.0.1:9/v1", "down"]
            assert "connection refused" in row[5]
            assert app.screen.query_one("#upstreams").display
    finally:
        stop_daemon(daemon)
