"""A real `appliance serve` subprocess on a temporary home, and the CLI as a subprocess.

Used by tests/conftest.py's session fixture and by tests that need a daemon of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from helpers.runtime import RUNTIME_CACHE

APPLIANCE = [sys.executable, "-m", "appliance"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def appliance_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    # The session's CPU-variant verdict (helpers.runtime), so no daemon redoes the self-test.
    env["APPLIANCE_RUNTIME__CACHE_DIR"] = str(RUNTIME_CACHE)
    env.update({"APPLIANCE_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra})
    return env


def run_cli(
    home: Path, *args: str, check: bool = True, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*APPLIANCE, *args], env=appliance_env(home, **env), capture_output=True, text=True,
        timeout=300, cwd=cwd,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"appliance {' '.join(args)} failed: {result.stderr}")
    return result


@dataclass
class Daemon:
    home: Path
    process: subprocess.Popen[str]
    base_url: str
    """OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
    api_key: str
    banner: str

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    @property
    def admin_socket(self) -> Path:
        return self.home / "admin.sock"

    def log(self) -> str:
        return (self.home / "daemon.log").read_text(errors="replace")


def start_daemon(
    home: Path, *, wait_ready: bool = True, ready_timeout_s: float = 120.0, **env: str
) -> Daemon:
    port = free_port()
    log = (home / "daemon.log").open("w")
    process = subprocess.Popen(
        [*APPLIANCE, "serve"],
        env=appliance_env(home, APPLIANCE_LISTEN=f"127.0.0.1:{port}", **env),
        stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    banner: list[str] = []
    for line in process.stdout:
        banner.append(line)
        if line.startswith("Default model:"):
            break
    text = "".join(banner)
    if process.poll() is not None or not banner:
        raise AssertionError(f"daemon did not start:\n{text}\n{(home / 'daemon.log').read_text()}")
    key = next((ln.split(": ", 1)[1].strip() for ln in banner if ln.startswith("API key: ")), "")
    scheme = "https" if "(OpenAI base URL): https://" in text else "http"
    daemon = Daemon(home, process, f"{scheme}://127.0.0.1:{port}/v1", key, text)
    if not wait_ready:
        return daemon
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        try:
            # Only "is it up": TLS tests check the certificate themselves.
            ready = httpx.get(f"{daemon.root_url}/ready", timeout=2, verify=False)
            if ready.status_code == 200:
                return daemon
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    stop_daemon(daemon)
    raise AssertionError(f"daemon never became ready:\n{text}\n{daemon.log()}")


def stop_daemon(daemon: Daemon) -> int:
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
    return daemon.process.returncode
