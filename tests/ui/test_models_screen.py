"""The models screen against a real daemon: import with the dialog, details, delete with
confirmation, unload and load, the catalog's verdicts, and errors as the daemon words them."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from appliance.ui.app import ApplianceApp
from helpers.console import modal_text, rows, settle, text
from helpers.daemon import Daemon
from helpers.tiny_gguf import write_tiny_llama


def _names(app: ApplianceApp) -> list[str]:
    return [row[0] for row in rows(app, "#installed")]


def _select(app: ApplianceApp, name: str) -> None:
    app.screen.query_one("#installed", DataTable).move_cursor(row=_names(app).index(name))


async def test_import_details_and_delete_a_model_from_the_console(
    console_daemon: Daemon, tmp_path: Path
) -> None:
    model_file = write_tiny_llama(tmp_path / "tiny-r1.gguf", seed=11)
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot, lambda: "smollm2" in _names(app), "the installed models")
        await pilot.press("i")
        await settle(pilot, lambda: app.screen.query("#import-source"), "the import dialog")
        app.screen.query_one("#import-source", Input).value = str(model_file)
        app.screen.query_one("#import-name", Input).value = "tiny-r1"
        app.screen.query_one("#import-source", Input).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: "tiny-r1" in _names(app), "the imported model")
        [row] = [r for r in rows(app, "#installed") if r[0] == "tiny-r1"]
        assert row[1:3] == ["llama", "Q8_0"]
        _select(app, "tiny-r1")
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen.query("#text-body"), "the details")
        details = text(app, "#text-body")
        assert "architecture llama" in details and "not loaded" in details
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert "Delete tiny-r1?" in text(app, "#confirm-question")
        await pilot.press("n")
        await pilot.pause(0.5)
        assert "tiny-r1" in _names(app), "answering no keeps the model"
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot, lambda: "tiny-r1" not in _names(app), "the model gone")


async def test_a_failed_import_shows_the_daemons_words_in_a_titled_dialog(
    console_daemon: Daemon, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.gguf"
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await pilot.press("i")
        await settle(pilot, lambda: app.screen.query("#import-source"), "the import dialog")
        app.screen.query_one("#import-source", Input).value = str(missing)
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen.query("#error-message"), "the error dialog")
        assert str(missing) in text(app, "#error-message")
        assert app.screen.query_one("#error-dialog").border_title
        assert "Traceback" not in modal_text(app)


async def test_unload_load_unpin_and_pin_the_model_from_the_console(
    console_daemon: Daemon,
) -> None:
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.3)

    def state() -> str:
        return rows(app, "#installed")[0][4]

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot, lambda: state().startswith("ready"), "smollm2 ready")
        _select(app, "smollm2")
        await pilot.press("u")
        await settle(pilot, lambda: state() == "-", "smollm2 unloaded")
        await pilot.press("l")
        # A load by the administrator pins the model: idle time does not unload it.
        await settle(pilot, lambda: state() == "ready (pinned)", "smollm2 loaded and pinned")
        assert rows(app, "#installed")[0][5].endswith("cpu0"), "a fit verdict on this box"
        await pilot.press("p")
        await settle(pilot, lambda: state() == "ready", "smollm2 unpinned")
        await pilot.press("p")
        await settle(pilot, lambda: state() == "ready (pinned)", "smollm2 pinned again")


async def test_the_catalog_tab_lists_deepseek_builds_with_a_verdict(console_daemon: Daemon) -> None:
    app = ApplianceApp(console_daemon.admin_socket, refresh_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot, lambda: rows(app, "#catalog"), "the catalog")
        catalog = rows(app, "#catalog")
        assert any("DeepSeek-R1" in row[0] for row in catalog)
        assert {row[3] for row in catalog} <= {"fits", "partial", "CPU only", "no fit"}
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen.query("#text-body"), "the catalog details")
        assert "On this box:" in text(app, "#text-body")
