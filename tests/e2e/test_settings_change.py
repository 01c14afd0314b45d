"""Changing settings on a running box: `appliance config set` goes through the daemon, which
validates and saves; `appliance restart` drains and starts it again with them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = start_daemon(tmp_path, wait_ready=False)
    yield running
    stop_daemon(running)


def admin_config(daemon: Daemon) -> dict:
    # The daemon's own view, through the same admin API the console uses.
    from appliance.client import AdminClient, calls

    with AdminClient(daemon.admin_socket) as client:
        return client.run(calls.settings()).model_dump(mode="json")


def editable(settings: dict, key: str) -> dict:
    return next(row for row in settings["editable"] if row["key"] == key)


def wait_for_restart(daemon: Daemon, before: float) -> dict:
    from appliance.errors import DaemonUnreachable

    for _ in range(300):
        try:
            status = json.loads(run_cli(daemon.home, "status", "--json").stdout)
            if status["started_at"] > before:
                return status
        except (AssertionError, DaemonUnreachable):
            pass
        time.sleep(0.2)
    raise AssertionError(f"the daemon did not come back:\n{daemon.log()}")


def test_a_saved_setting_waits_for_the_restart_and_the_restart_applies_it(
    daemon: Daemon,
) -> None:
    saved = run_cli(daemon.home, "config", "set", "engine.keep_alive_s", "60")
    assert "takes effect at the next start (engine.keep_alive_s)" in saved.stdout
    settings = admin_config(daemon)
    row = editable(settings, "engine.keep_alive_s")
    assert (row["value"], row["saved"], row["source"]) == (300.0, 60.0, "console")
    assert settings["restart_pending"] == ["engine.keep_alive_s"]

    started = json.loads(run_cli(daemon.home, "status", "--json").stdout)["started_at"]
    message = run_cli(daemon.home, "restart").stdout
    assert message.startswith("restarting: answers in progress may finish")
    wait_for_restart(daemon, started)
    assert daemon.process.poll() is None, "the daemon's process ended instead of restarting"
    settings = admin_config(daemon)
    assert settings["settings"]["engine"]["keep_alive_s"] == 60.0
    assert settings["restart_pending"] == []
    assert "received a restart request" in daemon.log()


def test_a_wrong_value_is_refused_by_the_daemon_and_nothing_changes(daemon: Daemon) -> None:
    refused = run_cli(daemon.home, "config", "set", "tls.mode", "on", check=False)
    assert refused.returncode == 2
    assert "invalid value for 'tls.mode' (not saved)" in refused.stderr
    assert "'off', 'self-signed' or 'files'" in refused.stderr
    assert not (daemon.home / "settings.toml").exists()
    assert admin_config(daemon)["restart_pending"] == []


def test_the_environment_wins_and_the_daemon_says_so(daemon: Daemon) -> None:
    # The tests' daemons get their address from APPLIANCE_LISTEN, as a unit drop-in would.
    saved = run_cli(daemon.home, "config", "set", "api.listen", "127.0.0.1:9")
    assert "an APPLIANCE_* variable in the daemon's environment wins over api.listen" in (
        saved.stdout
    )
    assert editable(admin_config(daemon), "api.listen")["source"] == "environment"
