"""API keys: the `api_keys` table; creating, checking, listing and revoking keys.

Imports only `appliance.errors` and `appliance.store.db` (no numpy, no gguf): the API process
calls `authenticate` on every request.

Only the sha256 of a key is stored, never the key. A key is 32 random bytes, so a plain
(unsalted, fast) hash is enough: there is no dictionary to guess from, and a hash lookup needs no
constant-time comparison because the attacker never learns which stored hash was close.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel

from appliance.errors import Conflict, NotFound, StorageError, UsageError
from appliance.records import KeyLimits
from appliance.store.db import Database

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-"
"""OpenAI's key prefix: clients and secret scanners recognise it."""
DISPLAY_PREFIX_CHARS = 8
"""How much of a key is kept in clear, so an administrator can tell keys apart (`sk-AbCdE`)."""
MAX_KEY_CHARS = 256
LAST_USED_RESOLUTION_S = 60.0
"""`last_used_at` is written at most this often per key, not on every request."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")

Scope = Literal["user", "admin"]


class ApiKeyInfo(BaseModel):
    """What may be shown about a key: everything but the key itself."""

    id: int
    name: str
    prefix: str
    """The first characters of the key, for telling keys apart."""
    scope: Scope
    created_at: float
    last_used_at: float | None = None
    revoked: bool = False
    reasoning_format: str | None = None
    """Where answers to this key put reasoning text, unless a request says; None: the default."""
    limits: KeyLimits = KeyLimits()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """API keys in the appliance database at `database`. Safe to share between threads."""

    def __init__(self, database: Path) -> None:
        self._db = Database(Path(database))

    def close(self) -> None:
        self._db.close()

    def create(
        self, name: str | None = None, scope: Scope = "user", reasoning_format: str | None = None
    ) -> tuple[ApiKeyInfo, str]:
        """Make a new key; return its record and the key itself, which is shown once only."""
        _check_reasoning_format(reasoning_format)
        if scope not in get_args(Scope):
            raise UsageError(f"invalid key scope {scope!r}: use 'user' or 'admin'")
        if name is not None and not NAME_PATTERN.fullmatch(name):
            raise UsageError(
                f"invalid key name {name!r}: use letters, digits and . _ : @ - (at most 64 "
                "characters, starting with a letter or digit)"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)  # 43 URL-safe characters after the prefix
        with self._db.write() as conn:
            name = name or _next_default_name(conn)
            if conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise Conflict(
                    f"an API key named '{name}' already exists (revoked keys keep their "
                    "names); choose another name"
                )
            cursor = conn.execute(
                "INSERT INTO api_keys (name, prefix, hash, scope, created_at, reasoning_format)"
                " VALUES (?,?,?,?,?,?)",
                (
                    name,
                    key[:DISPLAY_PREFIX_CHARS],
                    hash_key(key),
                    scope,
                    time.time(),
                    reasoning_format,
                ),
            )
            row = conn.execute(
                "SELECT * FROM api_keys WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
        return _info(row), key

    def authenticate(self, key: str) -> ApiKeyInfo | None:
        """The key's record if `key` is a valid, unrevoked key; else None."""
        if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_CHARS:
            return None
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE hash = ?", (hash_key(key),)).fetchone()
        if row is None or row["revoked_at"] is not None:
            return None
        info = _info(row)
        now = time.time()
        if info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION_S:
            try:
                with self._db.write() as conn:
                    conn.execute(
                        "UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, info.id)
                    )
                info.last_used_at = now
            except StorageError as exc:
                # Bookkeeping only: a full or read-only disk must not lock everyone out.
                log.warning("could not record the use of API key %s: %s", info.name, exc)
        return info

    def list(self) -> builtins.list[ApiKeyInfo]:
        """Every key, revoked ones included, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM api_keys ORDER BY id").fetchall()
        return [_info(row) for row in rows]

    def revoke(self, name_or_id: str | int) -> ApiKeyInfo:
        """Revoke a key by name (or by id); revoking a revoked key changes nothing."""
        with self._db.write() as conn:
            row = _find(conn, name_or_id)
            if row is None:
                raise NotFound(
                    f"no API key named or numbered '{name_or_id}'; list the keys with "
                    "`appliance keys list`"
                )
            if row["revoked_at"] is None:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), row["id"])
                )
                row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (row["id"],)).fetchone()
        return _info(row)

    def set_reasoning_format(self, name_or_id: str | int, value: str | None) -> ApiKeyInfo:
        """Change where answers to this key put reasoning text (None: the daemon's default)."""
        _check_reasoning_format(value)
        with self._db.write() as conn:
            row = _find(conn, name_or_id)
            if row is None:
                raise NotFound(f"no API key named or numbered {name_or_id!r}")
            conn.execute(
                "UPDATE api_keys SET reasoning_format = ? WHERE id = ?", (value, row["id"])
            )
            row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (row["id"],)).fetchone()
        return _info(row)

    def set_limits(self, name_or_id: str | int, limits: KeyLimits) -> ApiKeyInfo:
        """Replace the key's limits (None fields: no limit)."""
        for field in ("requests_per_minute", "tokens_per_day", "max_streams"):
            value = getattr(limits, field)
            if value is not None and value < 1:
                raise UsageError(f"{field} must be at least 1 (leave it unset for no limit)")
        models = None if limits.allowed_models is None else json.dumps(limits.allowed_models)
        with self._db.write() as conn:
            row = _find(conn, name_or_id)
            if row is None:
                raise NotFound(f"no API key named or numbered {name_or_id!r}")
            conn.execute(
                "UPDATE api_keys SET allowed_models = ?, requests_per_minute = ?, "
                "tokens_per_day = ?, max_streams = ? WHERE id = ?",
                (models, limits.requests_per_minute, limits.tokens_per_day,
                 limits.max_streams, row["id"]),
            )  # fmt: skip
            row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (row["id"],)).fetchone()
        return _info(row)

    def count_active(self) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
        return int(row[0])


def _find(conn: sqlite3.Connection, name_or_id: str | int) -> sqlite3.Row | None:
    # A name first: names may be all digits too, and a name is what people type.
    if isinstance(name_or_id, str):
        row = conn.execute("SELECT * FROM api_keys WHERE name = ?", (name_or_id,)).fetchone()
        if row is not None or not name_or_id.isdigit():
            return row
    return conn.execute("SELECT * FROM api_keys WHERE id = ?", (int(name_or_id),)).fetchone()


def _next_default_name(conn: sqlite3.Connection) -> str:
    number = int(conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0]) + 1
    while conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (f"key-{number}",)).fetchone():
        number += 1
    return f"key-{number}"


def _info(row: sqlite3.Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scope=row["scope"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked=row["revoked_at"] is not None,
        reasoning_format=row["reasoning_format"],
        limits=KeyLimits(
            allowed_models=json.loads(row["allowed_models"]) if row["allowed_models"] else None,
            requests_per_minute=row["requests_per_minute"],
            tokens_per_day=row["tokens_per_day"],
            max_streams=row["max_streams"],
        ),
    )


REASONING_FORMATS = ("deepseek", "ollama", "vllm", "none")


def _check_reasoning_format(value: str | None) -> None:
    if value is not None and value not in REASONING_FORMATS:
        raise UsageError(
            f"invalid reasoning format {value!r}: use one of {', '.join(REASONING_FORMATS)}"
        )
