"""The audit log: one row per LAN API request (who, what, how much, how it ended).

Imports only `appliance.errors` and `appliance.store.db`. Prompt text is stored only when the
caller passes it (the daemon does so only with `audit.store_prompts`). Rows older than the
retention are deleted by `prune`, which the daemon runs daily. `tokens_since` answers the
per-key daily token quota from the same rows, so a restart does not reset anyone's quota.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from appliance.store.db import Database


class AuditEntry(BaseModel):
    id: int = 0
    ts: float
    """When the request arrived (seconds since the epoch)."""
    key_id: int | None = None
    key_name: str | None = None
    route: str
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    status: int
    duration_s: float
    prompt: str | None = None


_COLUMNS = ("ts", "key_id", "key_name", "route", "model", "tokens_in", "tokens_out", "status",
            "duration_s", "prompt")  # fmt: skip


class AuditLog:
    """The `audit` table of the appliance database. Safe to share between threads."""

    def __init__(self, database: Path) -> None:
        self._db = Database(Path(database))

    def close(self) -> None:
        self._db.close()

    def record(self, entry: AuditEntry) -> None:
        values = tuple(getattr(entry, column) for column in _COLUMNS)
        marks = ",".join("?" * len(_COLUMNS))
        with self._db.write() as conn:
            conn.execute(f"INSERT INTO audit ({','.join(_COLUMNS)}) VALUES ({marks})", values)

    def query(
        self,
        *,
        since: float | None = None,
        key: str | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; `key` matches the key's name."""
        where, args = ["1 = 1"], []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if key is not None:
            where.append("key_name = ?")
            args.append(key)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        sql = f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        with self._db.read() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [AuditEntry(**dict(row)) for row in rows]

    def tokens_since(self, key_id: int, since: float) -> int:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(tokens_in + tokens_out), 0) FROM audit "
                "WHERE key_id = ? AND ts >= ?",
                (key_id, since),
            ).fetchone()
        return int(row[0])

    def prune(self, retention_days: int, now: float | None = None) -> int:
        """Delete entries older than the retention; return how many went."""
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        with self._db.write() as conn:
            return conn.execute("DELETE FROM audit WHERE ts < ?", (cutoff,)).rowcount
