"""LogBuffer: the daemon's recent log records, kept in memory for `GET /admin/logs`.

Imports only the standard library. A logging handler that keeps the last `capacity` records
with a sequence number, so the console can tail the log by asking for records after the last
one it saw, without reading the journal (which an `appliance-admin` member may not be able to).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BufferedRecord:
    seq: int
    """Increases by one per record since the daemon started; a tail asks for `after=seq`."""
    timestamp: float
    level: str
    logger: str
    message: str


class LogBuffer(logging.Handler):
    """A bounded, thread-safe ring of formatted records (workers log from threads)."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__(level=logging.DEBUG)
        self._records: deque[BufferedRecord] = deque(maxlen=capacity)
        self._seq = 0
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                # The last line of a traceback names the error; the journal keeps the rest.
                message += f" ({record.exc_info[0].__name__}: {record.exc_info[1]})"
        except Exception:  # a bad format string must not take logging down
            message = str(record.msg)
        with self._guard:
            self._seq += 1
            self._records.append(
                BufferedRecord(self._seq, record.created, record.levelname, record.name, message)
            )

    def since(
        self, after: int = 0, level: int = logging.DEBUG, limit: int = 500
    ) -> list[BufferedRecord]:
        """Records with `seq > after` at `level` or above, oldest first, at most the last
        `limit` of them."""
        with self._guard:
            found = [
                r for r in self._records if r.seq > after and logging.getLevelName(r.level) >= level
            ]
        return found[-limit:] if limit > 0 else []
