"""Health probes, the admin socket and its permissions, and admin scope on the LAN listener."""

from __future__ import annotations

import json
import stat

import httpx
import openai
import pytest

from appliance.client import AdminClient
from appliance.errors import DaemonUnreachable
from helpers.daemon import Daemon, run_cli


def test_health_and_ready_answer_without_a_key(daemon: Daemon) -> None:
    assert httpx.get(f"{daemon.root_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{daemon.root_url}/ready")
    assert ready.status_code == 200
    assert ready.json()["models"] == ["smollm2"]


def test_banner_prints_the_lan_url_and_a_urlsafe_key(daemon: Daemon) -> None:
    assert f"LAN API (OpenAI base URL): {daemon.base_url}" in daemon.banner
    key = daemon.api_key
    assert len(key) >= 32
    assert all(ch.isalnum() or ch in "-_" for ch in key)


def test_admin_socket_is_owner_and_group_only(daemon: Daemon) -> None:
    mode = stat.S_IMODE(daemon.admin_socket.stat().st_mode)
    assert mode == 0o660


def test_admin_status_shows_devices_and_the_loaded_model(daemon: Daemon) -> None:
    with AdminClient(daemon.admin_socket) as client:
        status = client.status()
    assert status.api_url == daemon.base_url
    assert status.default_model == "smollm2"
    assert [d.id for d in status.devices][:1] == ["cpu0"]
    [model] = status.models_loaded
    assert (model.name, model.state, model.engine) == ("smollm2", "ready", "llama.cpp")
    assert model.pid and model.pid != daemon.process.pid, "the model must run in its own process"
    assert (model.device_id, model.backend) == ("cpu0", "CPU")
    assert "CPU" in model.placement, "the administrator sees why the model runs where it does"


def test_admin_client_without_a_daemon_says_it_is_not_running(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with AdminClient(tmp_path / "admin.sock") as client, pytest.raises(DaemonUnreachable) as caught:
        client.status()
    assert "not running" in caught.value.message


def test_admin_routes_on_the_lan_need_an_admin_key(daemon: Daemon) -> None:
    url = f"{daemon.root_url}/admin/status"
    assert httpx.get(url).status_code == 401
    user = httpx.get(url, headers={"Authorization": f"Bearer {daemon.api_key}"})
    assert user.status_code == 403
    created = run_cli(daemon.home, "keys", "create", "--scope", "admin", "--json", "--name", "ops")
    admin_key = json.loads(created.stdout)["key"]
    admin = httpx.get(url, headers={"Authorization": f"Bearer {admin_key}"})
    assert admin.status_code == 200
    assert admin.json()["default_model"] == "smollm2"
    run_cli(daemon.home, "keys", "revoke", "ops")


def test_key_created_through_the_cli_works_until_revoked(daemon: Daemon) -> None:
    created = run_cli(daemon.home, "keys", "create", "--name", "alice")
    key = created.stdout.strip().removeprefix("API key: ")
    alice = openai.OpenAI(base_url=daemon.base_url, api_key=key, max_retries=0)
    assert alice.models.list().data[0].id == "smollm2"
    run_cli(daemon.home, "keys", "revoke", "alice")
    with pytest.raises(openai.AuthenticationError):
        alice.models.list()


def test_status_command_reports_the_daemon_as_json(daemon: Daemon) -> None:
    result = run_cli(daemon.home, "status", "--json")
    status = json.loads(result.stdout)
    assert status["models_loaded"][0]["state"] == "ready"


def test_the_log_says_each_start_line_once(daemon: Daemon) -> None:
    """A journal shows changes, not echoes: two listeners, one 'Started server process'."""
    log = daemon.log()
    assert log.count("Started server process") == 1
    assert log.count("INFO appliance.devices: devices: ") == 1
