"""A daemon on a fresh home: first key, boot hooks, no model yet, then a model imported live."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon

RECORDER = """#!/bin/sh
# Records what the daemon hands a hook: its event variable and the JSON on stdin.
{ echo "$APPLIANCE_EVENT"; cat; } > "$(dirname "$0")/../$APPLIANCE_EVENT.seen"
"""


def install_hook(home: Path, event: str) -> None:
    folder = home / "hooks.d" / f"{event}.d"
    folder.mkdir(parents=True)
    hook = folder / "10-record"
    hook.write_text(RECORDER)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def seen(home: Path, event: str) -> tuple[str, dict[str, object]]:
    text = (home / "hooks.d" / f"{event}.seen").read_text()
    name, _, payload = text.partition("\n")
    return name, json.loads(payload)


@pytest.fixture(scope="module")
def empty_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("fresh")
    install_hook(home, "boot")
    install_hook(home, "model-loaded")
    daemon = start_daemon(home, wait_ready=False)
    yield daemon
    stop_daemon(daemon)


def test_fresh_home_gets_a_key_but_is_not_ready_without_a_model(empty_daemon: Daemon) -> None:
    assert len(empty_daemon.api_key) >= 32
    ready = httpx.get(f"{empty_daemon.root_url}/ready")
    assert ready.status_code == 503
    assert "appliance models import" in ready.json()["reason"]
    assert "Default model: none installed" in empty_daemon.banner


def test_boot_hooks_run_with_the_device_list(empty_daemon: Daemon) -> None:
    for _ in range(600):  # boot hooks run in the background after the listeners are up
        if (empty_daemon.home / "hooks.d" / "boot.seen").exists():
            break
        time.sleep(0.05)
    event, payload = seen(empty_daemon.home, "boot")
    assert event == "boot"
    assert payload["devices"][0]["id"] == "cpu0"  # type: ignore[index]


def test_model_imported_and_loaded_through_the_daemon_serves_and_fires_hooks(
    empty_daemon: Daemon, embedded_model: Path
) -> None:
    home = empty_daemon.home
    imported = run_cli(home, "models", "import", str(embedded_model), "--name", "tiny", "--json")
    assert json.loads(imported.stdout)["created"] is True
    loaded = json.loads(run_cli(home, "models", "load", "tiny", "--json").stdout)
    assert loaded["state"] == "ready"
    assert httpx.get(f"{empty_daemon.root_url}/ready").status_code == 200
    event, payload = seen(home, "model-loaded")
    assert (event, payload["model"]) == ("model-loaded", "tiny")


def test_restart_on_the_same_home_keeps_the_key_and_says_so(empty_daemon: Daemon) -> None:
    stop_daemon(empty_daemon)
    assert not empty_daemon.admin_socket.exists(), "a clean stop removes the socket"
    again = start_daemon(empty_daemon.home)
    try:
        assert again.api_key == ""
        assert "API keys: 1 active" in again.banner
        headers = {"Authorization": f"Bearer {empty_daemon.api_key}"}
        models = httpx.get(f"{again.base_url}/models", headers=headers)
        assert models.json()["data"][0]["id"] == "tiny"
    finally:
        stop_daemon(again)
