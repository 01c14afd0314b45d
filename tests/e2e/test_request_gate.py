"""The LAN listener's gate: body size and API key are checked on the headers, before the body.

A daemon of its own, without a model (nothing here reaches the engine), with a 1 MiB body
limit and the OpenAPI docs in their default state (off); a second one with the docs on.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from appliance.client import AdminClient
from appliance.store import ModelStore
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon
from helpers.tiny_gguf import write_tiny_model

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("gate")
    handle = start_daemon(home, wait_ready=False, APPLIANCE_LIMITS__MAX_BODY_BYTES=str(LIMIT))
    yield handle
    stop_daemon(handle)


def raw_request(daemon: Daemon, head: str, body: bytes = b"") -> tuple[int, dict[str, object]]:
    """Send `head` (and `body`, possibly less than announced) on a raw socket; read the answer.

    A server that waited for the announced body would never answer: the socket's timeout turns
    that into a failure rather than a hang.
    """
    host, port = daemon.root_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def post_head(daemon: Daemon, length: int, key: str | None = None) -> str:
    auth = f"Authorization: Bearer {key}\n" if key else ""
    return (
        "POST /v1/chat/completions HTTP/1.1\nHost: test\nContent-Type: application/json\n"
        f"{auth}Content-Length: {length}\n"
    )


def test_a_body_over_the_limit_is_refused_with_413_before_the_key_is_checked(gated) -> None:
    status, body = raw_request(gated, post_head(gated, 32 * 1024 * 1024))

    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert "1,048,576 bytes (limits.max_body_bytes)" in body["error"]["message"]


def test_a_request_without_a_key_is_refused_before_its_body_is_read(gated) -> None:
    # The body is announced but never sent: only a check on the headers can answer.
    status, body = raw_request(gated, post_head(gated, LIMIT - 1))

    assert status == 401
    assert "requires an API key" in body["error"]["message"]


def test_a_wrong_key_is_refused_before_the_body_is_read_too(gated) -> None:
    status, _ = raw_request(gated, post_head(gated, LIMIT - 1, key="not-a-key"))

    assert status == 401


def test_a_chunked_body_over_the_limit_is_refused_with_413(gated) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "x", "messages": ['
        for _ in range(64):
            yield b'{"role": "user", "content": "' + b"a" * 32768 + b'"},'
        yield b'{"role": "user", "content": "end"}]}'

    response = httpx.post(
        f"{gated.base_url}/chat/completions", content=chunks(), timeout=60,
        headers={"Authorization": f"Bearer {gated.api_key}", "Content-Type": "application/json"},
    )  # fmt: skip

    assert response.status_code == 413, response.text
    assert "limits.max_body_bytes" in response.json()["error"]["message"]


def test_a_chunked_body_under_the_limit_is_served(gated) -> None:
    pieces = iter([b'{"model": "x", ', b'"messages": []}'])
    response = httpx.post(
        f"{gated.base_url}/chat/completions", content=pieces,
        headers={"Authorization": f"Bearer {gated.api_key}", "Content-Type": "application/json"},
    )  # fmt: skip

    # Read and parsed: the validation names the empty list.
    assert response.status_code == 400
    assert "messages" in response.json()["error"]["message"]


def test_a_flood_of_large_unauthenticated_bodies_costs_the_daemon_no_memory(gated) -> None:
    # The measurement: 32 MiB bodies without a key took the daemon from 65 to 900 MiB.
    daemon = psutil.Process(gated.process.pid)
    before = daemon.memory_info().rss
    payload = b'{"model": "x", "messages": [' + b"{}," * (LIMIT // 3 - 20) + b"{}]}"
    for _ in range(20):
        status, _ = raw_request(gated, post_head(gated, len(payload)), payload)
        assert status == 401
    assert daemon.memory_info().rss - before < 16 * 1024 * 1024


def test_openapi_docs_are_off_by_default(gated) -> None:
    headers = {"Authorization": f"Bearer {gated.api_key}"}
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{gated.root_url}{path}").status_code == 401
        assert httpx.get(f"{gated.root_url}{path}", headers=headers).status_code == 404


def test_openapi_docs_when_turned_on_are_for_key_holders(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, wait_ready=False, APPLIANCE_API__OPENAPI_DOCS="true")
    try:
        headers = {"Authorization": f"Bearer {daemon.api_key}"}
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{daemon.root_url}{path}").status_code == 401
            assert httpx.get(f"{daemon.root_url}{path}", headers=headers).status_code == 200
        schema = httpx.get(f"{daemon.root_url}/openapi.json", headers=headers).json()
        assert "/v1/chat/completions" in schema["paths"]
    finally:
        stop_daemon(daemon)


def test_ready_says_why_a_model_is_down_without_naming_files(tmp_path: Path) -> None:
    run_cli(tmp_path, "models", "import", str(write_tiny_model(tmp_path / "t.gguf", "llama")),
            "--name", "tiny")  # fmt: skip
    store = ModelStore(tmp_path)
    blob = Path(store.get("tiny").path)
    store.close()
    # Broken after import: the load fails with llama.cpp's message, which names the file.
    blob.write_bytes(blob.read_bytes()[:4096])
    daemon = start_daemon(tmp_path, wait_ready=False)
    try:
        with AdminClient(daemon.admin_socket) as admin:
            for _ in range(600):
                loaded = admin.status().models_loaded
                if loaded and loaded[0].state != "loading":
                    break
                time.sleep(0.2)
            [record] = loaded
        ready = httpx.get(f"{daemon.root_url}/ready")
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert reason.startswith("model 'tiny' is failed")
        assert "/" not in reason, reason
        assert str(blob) in record.error, "the administrator still sees the full reason"
    finally:
        stop_daemon(daemon)


def test_a_body_that_is_not_json_gets_the_error_envelope(gated) -> None:
    # Found by fuzzing: Starlette's own refusals answered {"detail": ...}.
    response = httpx.post(
        f"{gated.base_url}/chat/completions", content=b"\xb3\xb7\xc9>\xc3",
        headers={"Authorization": f"Bearer {gated.api_key}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "the request body is not valid JSON (UTF-8); send a JSON object"
    )
    unknown = httpx.get(f"{gated.base_url}/nowhere", headers={"X-API-Key": gated.api_key})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "/v1/nowhere: no such endpoint"
