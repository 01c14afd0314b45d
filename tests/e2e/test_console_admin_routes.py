"""The admin routes the console reads: the daemon's log tail, the box's memory and disk, and the
`/v1` chat on the admin socket (keyless: the socket's mode is the authorisation)."""

from __future__ import annotations

import json

import httpx

from appliance.client import AdminClient
from appliance.errors import UsageError
from helpers.daemon import Daemon, run_cli


def _socket_client(daemon: Daemon) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(daemon.admin_socket))
    return httpx.Client(transport=transport, base_url="http://appliance", timeout=120)


def test_the_log_tail_serves_recent_records_and_only_newer_ones_after_a_sequence_number(
    daemon: Daemon,
) -> None:
    with AdminClient(daemon.admin_socket) as client:
        lines = client.logs(level="INFO")
        assert any("Started server process" in line.message for line in lines)
        assert all(line.level in ("INFO", "WARNING", "ERROR", "CRITICAL") for line in lines)
        last = lines[-1].seq
        client.status()
        assert all(line.seq > last for line in client.logs(after=last, level="DEBUG"))
        assert all(line.level == "ERROR" for line in client.logs(level="error"))


def test_an_unknown_log_level_is_refused_naming_the_levels(daemon: Daemon) -> None:
    with AdminClient(daemon.admin_socket) as client:
        try:
            client.logs(level="LOUD")
        except UsageError as error:
            assert "'LOUD'" in error.message and "WARNING" in error.message
        else:
            raise AssertionError("an unknown level was accepted")


def test_host_stats_report_memory_and_the_state_folders_disk(daemon: Daemon) -> None:
    with AdminClient(daemon.admin_socket) as client:
        host = client.host()
    assert 0 < host.memory_available_bytes <= host.memory_total_bytes
    assert host.disk.path == str(daemon.home)
    assert 0 < host.disk.free_bytes <= host.disk.total_bytes


def test_chat_on_the_admin_socket_needs_no_key_and_streams(daemon: Daemon) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with _socket_client(daemon) as http, http.stream("POST", "/v1/chat/completions",
                                                     json=body) as response:  # fmt: skip
        assert response.status_code == 200
        chunks = [json.loads(line[5:]) for line in response.iter_lines()
                  if line.startswith("data:") and "[DONE]" not in line]  # fmt: skip
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    # The LAN listener still wants a key for the same route.
    lan = httpx.post(f"{daemon.base_url}/chat/completions", json={**body, "stream": False})
    assert lan.status_code == 401


def test_models_unload_stops_the_worker_and_load_brings_it_back(daemon: Daemon) -> None:
    result = run_cli(daemon.home, "models", "unload", "smollm2")
    assert "unloaded smollm2" in result.stderr
    with AdminClient(daemon.admin_socket) as client:
        assert [m.name for m in client.status().models_loaded] == []
    again = run_cli(daemon.home, "models", "unload", "smollm2")
    assert "was not loaded" in again.stderr
    run_cli(daemon.home, "models", "load", "smollm2")
    with AdminClient(daemon.admin_socket) as client:
        [model] = client.status().models_loaded
    assert (model.name, model.state) == ("smollm2", "ready")
