"""sd_notify(3) over `$NOTIFY_SOCKET`: READY=1, STATUS=, EXTEND_TIMEOUT_USEC=, WATCHDOG=1,
STOPPING=1. Standard library only; imports nothing from the appliance.

Written here rather than taken from PyPI: the protocol is one datagram per message, and of the
libraries, `sdnotify` has not been released since 2017, `systemd-watchdog` cannot send
EXTEND_TIMEOUT_USEC, and `cysystemd` bundles a libsystemd that needs glibc 2.34 (Kylin V10 and
UOS 20 have 2.28). Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("appliance.sd_notify")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a socket in the abstract namespace: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for; a child inheriting the
        # environment must not feed it (sd_watchdog_enabled(3)).
        mine = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        """systemd's WatchdogSec= in seconds, or None when no watchdog is armed."""
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False when it could not be sent."""
        if not self.address:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message, self.address)
        except OSError as error:
            # The manager went away or the socket is full: never fatal for the daemon.
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), error)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={_one_line(status)}")

    def extend_timeout(self, seconds: float, status: str | None = None) -> bool:
        lines = [f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}"]
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        return self.send(*lines)

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={_one_line(status)}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    """STATUS= ends at the newline; keep the whole message."""
    return " ".join(text.split())
