"""`Type=notify`: what a real daemon tells systemd, read from a real notify socket.

systemd hands the daemon `NOTIFY_SOCKET` (and `WATCHDOG_USEC` with WatchdogSec=); these tests
bind that datagram socket themselves and read every message, as the service manager would.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from appliance.client import AdminClient
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon
from helpers.runtime import runtime_report


@dataclass
class NotifySocket:
    path: Path
    messages: list[dict[str, str]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate, timeout_s: float = 120.0, start: int = 0) -> int:  # type: ignore[no-untyped-def]
        """Index of the first message from `start` on that satisfies `predicate`."""
        with self.arrived:
            found = self.arrived.wait_for(
                lambda: next(
                    (i for i, m in enumerate(self.messages) if i >= start and predicate(m)), None
                ),
                timeout=timeout_s,
            )
        assert found is not None, f"no such message; got {self.messages}"
        return found


@contextmanager
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    received = NotifySocket(path)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with received.arrived:
                received.messages.append(fields)
                received.arrived.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield received
    finally:
        stop.set()
        reader.join()
        sock.close()


def start(home: Path, notify: NotifySocket, *, wait_ready: bool = True, **env: str) -> Daemon:
    runtime_report()  # the session's CPU variant verdict, so this daemon does not redo it
    home.mkdir(parents=True, exist_ok=True)
    return start_daemon(home, wait_ready=wait_ready, NOTIFY_SOCKET=str(notify.path), **env)


def test_daemon_reports_loading_then_ready_once_the_model_answers_then_feeds_the_watchdog(
    tmp_path: Path, embedded_model: Path
) -> None:
    home = tmp_path / "home"
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    with notify_socket(tmp_path) as notify:
        daemon = start(home, notify, WATCHDOG_USEC="2000000")
        try:
            ready = notify.wait_for(lambda m: m.get("READY") == "1")
            assert httpx.get(f"{daemon.root_url}/ready").status_code == 200
            before = notify.messages[:ready]
            assert any(m.get("STATUS", "").startswith("loading smollm2") for m in before)
            assert any("EXTEND_TIMEOUT_USEC" in m for m in before), "a load extends the timeout"
            status = notify.messages[ready]["STATUS"]
            assert status == f"serving smollm2 on cpu0 at {daemon.base_url}"
            notify.wait_for(lambda m: m.get("WATCHDOG") == "1", start=ready + 1)
        finally:
            stop_daemon(daemon)
        stopping = notify.wait_for(lambda m: m.get("STOPPING") == "1", timeout_s=10)
        assert notify.messages[stopping]["STATUS"].startswith("stopping")


def test_a_box_without_models_is_ready_and_says_how_to_add_one(tmp_path: Path) -> None:
    with notify_socket(tmp_path) as notify:
        daemon = start(tmp_path / "home", notify, wait_ready=False)
        try:
            ready = notify.wait_for(lambda m: m.get("READY") == "1")
            assert "no model installed" in notify.messages[ready]["STATUS"]
            assert "appliance models import" in notify.messages[ready]["STATUS"]
        finally:
            stop_daemon(daemon)


def test_a_hung_worker_stops_the_watchdog_until_the_daemon_has_killed_it(
    tmp_path: Path, embedded_model: Path
) -> None:
    home = tmp_path / "home"
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    with notify_socket(tmp_path) as notify:
        daemon = start(home, notify, WATCHDOG_USEC="400000", APPLIANCE_ENGINE__HANG_TIMEOUT_S="2")
        try:
            ready = notify.wait_for(lambda m: m.get("READY") == "1")
            notify.wait_for(lambda m: m.get("WATCHDOG") == "1", start=ready)
            with AdminClient(daemon.admin_socket) as admin:
                worker = admin.status().models_loaded[0].pid
            assert worker
            os.kill(worker, signal.SIGSTOP)  # alive, but it will never answer a heartbeat
            stale = notify.wait_for(
                lambda m: m.get("STATUS", "").startswith("engine heartbeat stale"), start=ready
            )
            assert "smollm2" in notify.messages[stale]["STATUS"]
            # The next status comes once the daemon has killed the hung worker (it reloads it).
            moved_on = notify.wait_for(lambda m: "STATUS" in m, start=stale + 1)
            fed_while_stale = [m for m in notify.messages[stale:moved_on] if "WATCHDOG" in m]
            assert not fed_while_stale, "the watchdog must not be fed while a worker is hung"
            recovered = notify.wait_for(
                lambda m: m.get("STATUS", "").startswith("serving smollm2"), start=moved_on
            )
            notify.wait_for(lambda m: m.get("WATCHDOG") == "1", start=recovered)
            with AdminClient(daemon.admin_socket) as admin:
                [model] = admin.status().models_loaded
            assert model.pid != worker, "the hung worker was replaced"
        finally:
            stop_daemon(daemon)
