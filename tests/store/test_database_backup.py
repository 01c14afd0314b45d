"""A database about to be migrated is copied first, so the previous package can be reinstalled
with the database it knew (the rollback in docs/installation.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from appliance.store.db import MIGRATIONS, SCHEMA_VERSION, open_database


def old_database(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def test_migrating_an_older_database_keeps_a_copy_at_its_old_schema(tmp_path: Path) -> None:
    db = tmp_path / "appliance.db"
    old_database(db, SCHEMA_VERSION - 1)
    open_database(db).close()
    backup = tmp_path / f"appliance.db.schema-{SCHEMA_VERSION - 1}.bak"
    copy = sqlite3.connect(backup)
    assert copy.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION - 1
    copy.close()


def test_a_fresh_or_current_database_is_not_copied(tmp_path: Path) -> None:
    db = tmp_path / "appliance.db"
    open_database(db).close()
    open_database(db).close()
    assert not list(tmp_path.glob("*.bak"))
