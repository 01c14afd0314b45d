"""open_database: schema migrations, connection settings, and storage failures."""

from __future__ import annotations

import sqlite3

import pytest

from appliance.errors import StorageError
from appliance.store import db


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows} - {"sqlite_sequence"}


def test_opening_twice_applies_migrations_once(tmp_path):
    path = tmp_path / "state" / "appliance.db"
    first = db.open_database(path)
    assert first.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    first.close()
    second = db.open_database(path)
    assert second.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert tables(second) == {"models", "api_keys", "audit"}
    second.close()


def test_connection_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    conn = db.open_database(tmp_path / "appliance.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
    conn.close()


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    broken = [("CREATE TABLE half_done (x)", "THIS IS NOT SQL")]
    monkeypatch.setattr(db, "MIGRATIONS", broken)
    monkeypatch.setattr(db, "SCHEMA_VERSION", 1)
    path = tmp_path / "appliance.db"
    with pytest.raises(sqlite3.OperationalError):
        db.open_database(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert tables(conn) == set()
    conn.close()


def test_a_database_from_a_newer_appliance_is_refused(tmp_path):
    path = tmp_path / "appliance.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer appliance"):
        db.open_database(path)


def test_unwritable_state_dir_is_a_storage_error_naming_it(tmp_path):
    # Running as root, permissions stop nothing: a path *under a regular file* cannot be made.
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    with pytest.raises(StorageError, match=f"cannot create the state directory {a_file}"):
        db.open_database(a_file / "state" / "appliance.db")


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path):
    path = tmp_path / "appliance.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=f"{path} is not an appliance database"):
        db.open_database(path)


def test_a_directory_in_place_of_the_database_is_a_storage_error(tmp_path):
    path = tmp_path / "appliance.db"
    path.mkdir()
    with pytest.raises(StorageError, match=str(path)):
        db.open_database(path)
