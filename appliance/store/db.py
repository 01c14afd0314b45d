"""The SQLite database: opening it, its schema and migrations, and SQLite errors as StorageError.

Imports only `appliance.errors`. The stores (`models.py`, `keys.py`) own the queries.

Threading: each store holds one connection opened with `check_same_thread=False` and serialises
its use with a lock (see `Database`). One connection per store is cheaper than one per call on the
hot path (`KeyStore.authenticate` runs for every API request), and the lock keeps one thread's
BEGIN…COMMIT from interleaving with another's on the shared connection. Separate processes (the
daemon and a CLI run on the same box) are coordinated by SQLite itself: WAL mode lets readers
run beside the writer, and `busy_timeout` makes a writer wait instead of failing at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from appliance.errors import StorageError

BUSY_TIMEOUT_MS = 10_000

# One tuple of statements per schema version; version N is MIGRATIONS[N - 1]. Append only:
# a released entry is never edited, because boxes in the field have already applied it.
# (Statements, not one script: `executescript` commits any open transaction first, which
# would break "each migration applies completely or not at all".)
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """
        CREATE TABLE models (
            name            TEXT PRIMARY KEY,
            format          TEXT NOT NULL,
            path            TEXT NOT NULL,   -- relative to the models dir, so the dir can move
            sha256          TEXT NOT NULL,
            size_bytes      INTEGER NOT NULL,
            architecture    TEXT NOT NULL DEFAULT '',
            parameter_count INTEGER,
            quantization    TEXT NOT NULL DEFAULT '',
            context_length  INTEGER,
            chat_template   TEXT,
            bos_token       TEXT NOT NULL DEFAULT '',
            eos_token       TEXT NOT NULL DEFAULT '',
            source          TEXT NOT NULL DEFAULT '',
            imported_at     REAL NOT NULL
        )
        """,
        "CREATE INDEX models_sha256 ON models (sha256)",
        """
        CREATE TABLE api_keys (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids of revoked keys never reused
            name         TEXT NOT NULL UNIQUE,
            prefix       TEXT NOT NULL,
            hash         TEXT NOT NULL UNIQUE,               -- sha256 hex of the whole key
            scope        TEXT NOT NULL CHECK (scope IN ('user', 'admin')),
            created_at   REAL NOT NULL,
            last_used_at REAL,
            revoked_at   REAL
        )
        """,
    ),
    (
        # Issue 4: the quantization mix, special tokens, the planner's shape (JSON) and the
        # catalog entry a file belongs to. NULL in rows imported before: read lazily.
        "ALTER TABLE models ADD COLUMN tensor_types TEXT",
        "ALTER TABLE models ADD COLUMN special_tokens TEXT",
        "ALTER TABLE models ADD COLUMN shape TEXT",
        "ALTER TABLE models ADD COLUMN catalog_id TEXT",
    ),
    (
        # Issue 5: an administrator's chat template replacing the file's own, and a key's
        # preferred field for reasoning text. NULL means "not set".
        "ALTER TABLE models ADD COLUMN chat_template_override TEXT",
        "ALTER TABLE api_keys ADD COLUMN reasoning_format TEXT",
    ),
    (
        # Issue 10: the audit log, and per-key limits (NULL: no limit).
        """
        CREATE TABLE audit (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            ts          REAL NOT NULL,              -- when the request arrived (epoch s)
            key_id      INTEGER,                    -- NULL when keys are off
            key_name    TEXT,
            route       TEXT NOT NULL,
            model       TEXT,
            tokens_in   INTEGER NOT NULL DEFAULT 0,
            tokens_out  INTEGER NOT NULL DEFAULT 0,
            status      INTEGER NOT NULL,
            duration_s  REAL NOT NULL,
            prompt      TEXT                        -- only with audit.store_prompts
        )
        """,
        "CREATE INDEX audit_ts ON audit (ts)",
        "CREATE INDEX audit_key_ts ON audit (key_id, ts)",
        "ALTER TABLE api_keys ADD COLUMN allowed_models TEXT",  # JSON list of model names
        "ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER",
        "ALTER TABLE api_keys ADD COLUMN tokens_per_day INTEGER",
        "ALTER TABLE api_keys ADD COLUMN max_streams INTEGER",
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the appliance database at `path` and bring its schema up to date.

    The connection is in autocommit mode (`isolation_level=None`): writes that must be atomic go
    through `transaction()`. Raises StorageError naming the path when the directory cannot be
    created or written, the disk is full, or the file is not an appliance database.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the state directory {path.parent}: {exc.strerror or exc}"
        ) from None
    with sqlite_errors(path):
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
    try:
        with sqlite_errors(path):
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # NORMAL is durable against application crashes in WAL mode and skips an fsync
            # per commit; a power cut may lose the last commit, never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            backup_before_migrating(conn, path)
            migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def backup_before_migrating(conn: sqlite3.Connection, path: Path) -> Path | None:
    """Copy a database that is about to be migrated to `<name>.schema-<version>.bak`, so that
    the previous package can be reinstalled with the database it knew (docs/installation.md,
    rollback). A fresh database (version 0) and an up-to-date one are not copied."""
    version = _user_version(conn)
    if not 0 < version < SCHEMA_VERSION:
        return None
    backup = path.with_name(f"{path.name}.schema-{version}.bak")
    partial = backup.with_name(backup.name + ".partial")
    target = sqlite3.connect(partial)
    try:
        conn.backup(target)  # a consistent copy even while another process writes
    finally:
        target.close()
    partial.replace(backup)
    return backup


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database lacks, each in its own transaction; return the version."""
    version = _user_version(conn)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database was written by a newer appliance (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade the appliance package"
        )
    while version < SCHEMA_VERSION:
        with transaction(conn):
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = _user_version(conn)
            if version >= SCHEMA_VERSION:
                break
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
    return version


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception.

    IMMEDIATE takes the write lock up front, so a read-then-write (check a name, then insert)
    cannot be overtaken by another process between the two.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # Also after a failed COMMIT (disk full), which can leave the transaction open.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """Turn SQLite's storage failures into StorageError naming the database file."""
    try:
        yield
    except sqlite3.Error as exc:
        text = str(exc)
        code = getattr(exc, "sqlite_errorname", "")
        if "full" in text or code == "SQLITE_FULL":
            raise StorageError(f"disk full while writing the database {path}: {text}") from None
        if "readonly" in text or code.startswith("SQLITE_READONLY"):
            raise StorageError(f"the database {path} is read-only: {text}") from None
        if "unable to open" in text or code.startswith("SQLITE_CANTOPEN"):
            raise StorageError(
                f"cannot open the database {path}: its directory is missing or not writable"
            ) from None
        if "not a database" in text or code == "SQLITE_NOTADB":
            raise StorageError(f"{path} is not an appliance database ({text})") from None
        if "locked" in text or code.startswith("SQLITE_BUSY"):
            raise StorageError(
                f"the database {path} stayed locked by another process for "
                f"{BUSY_TIMEOUT_MS // 1000} s: {text}"
            ) from None
        if "disk I/O error" in text or code.startswith("SQLITE_IOERR"):
            raise StorageError(f"I/O error on the database {path}: {text}") from None
        raise


class Database:
    """One connection shared by the threads of a store, with the lock that serialises its use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn = open_database(self.path)
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_errors(self.path):
            yield self._conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite_errors(self.path), transaction(self._conn) as conn:
            yield conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
