"""KeyStore: keys that authenticate, keys that don't, and what is kept on disk."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from appliance.errors import Conflict, NotFound, UsageError
from appliance.store import KeyStore, ModelStore, keys


@pytest.fixture
def key_store(tmp_path: Path):
    store = KeyStore(tmp_path / "state" / "appliance.db")
    yield store
    store.close()


def test_a_created_key_authenticates(key_store):
    info, key = key_store.create("alice")
    found = key_store.authenticate(key)
    assert found is not None
    assert (found.id, found.name, found.scope, found.revoked) == (info.id, "alice", "user", False)
    assert found.last_used_at is not None


def test_a_wrong_key_does_not_authenticate(key_store):
    _info, key = key_store.create()
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    for candidate in (wrong, "", "sk-", key.removeprefix("sk-"), "sk-" + "x" * 10_000):
        assert key_store.authenticate(candidate) is None


def test_a_revoked_key_does_not_authenticate(key_store):
    _info, key = key_store.create("bob")
    revoked = key_store.revoke("bob")
    assert revoked.revoked
    assert key_store.authenticate(key) is None
    assert key_store.count_active() == 0


def test_keys_are_sk_and_43_url_safe_characters(key_store):
    info, key = key_store.create()
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{43}", key)
    assert info.prefix == key[:8]
    assert key_store.create()[1] != key


def test_only_the_hash_of_a_key_is_written_to_disk(tmp_path, key_store):
    _info, key = key_store.create("carol", scope="admin")
    assert key_store.authenticate(key) is not None
    files = list((tmp_path / "state").iterdir())  # the database and its WAL
    on_disk = b"".join(path.read_bytes() for path in files)
    assert keys.hash_key(key).encode() in on_disk
    assert key.encode() not in on_disk
    assert key[8:].encode() not in on_disk


def test_default_names_count_up(key_store):
    assert key_store.create()[0].name == "key-1"
    assert key_store.create("team")[0].name == "team"
    assert key_store.create()[0].name == "key-3"


def test_a_taken_name_is_a_conflict_even_after_revoking(key_store):
    key_store.create("alice")
    key_store.revoke("alice")
    with pytest.raises(Conflict, match="'alice' already exists"):
        key_store.create("alice")


def test_revoke_by_id_and_unknown_key(key_store):
    info, _key = key_store.create("dave")
    assert key_store.revoke(info.id).revoked
    assert key_store.revoke(str(info.id)).revoked  # again: nothing changes, no error
    with pytest.raises(NotFound, match="no API key named or numbered 'nobody'"):
        key_store.revoke("nobody")


def test_bad_scope_and_bad_name_are_usage_errors(key_store):
    with pytest.raises(UsageError, match="scope"):
        key_store.create(scope="root")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="invalid key name"):
        key_store.create("no spaces please")


def test_list_shows_every_key_without_secrets(key_store):
    key_store.create("a")
    key_store.create("b", scope="admin")
    key_store.revoke("a")
    listed = key_store.list()
    assert [(k.name, k.scope, k.revoked) for k in listed] == [
        ("a", "user", True),
        ("b", "admin", False),
    ]
    assert set(listed[0].model_dump()) == {
        "id", "name", "prefix", "scope", "created_at", "last_used_at", "revoked",
        "reasoning_format", "limits",
    }  # fmt: skip
    assert key_store.count_active() == 1


def test_last_used_is_written_at_most_once_a_minute(key_store, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(keys.time, "time", lambda: clock[0])
    _info, key = key_store.create()
    assert key_store.authenticate(key).last_used_at == 1_000_000.0
    clock[0] += 30
    assert key_store.authenticate(key).last_used_at == 1_000_000.0
    clock[0] += 31
    assert key_store.authenticate(key).last_used_at == 1_000_061.0
    assert key_store.list()[0].last_used_at == 1_000_061.0


def test_keys_and_models_share_one_database(tmp_path):
    models = ModelStore(tmp_path / "state")
    key_store = KeyStore(tmp_path / "state" / "appliance.db")
    _info, key = key_store.create()
    assert models.list() == []
    assert key_store.authenticate(key) is not None
    models.close()
    key_store.close()


def test_many_threads_can_create_and_check_keys_at_once(key_store):
    created: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                _info, key = key_store.create()
                assert key_store.authenticate(key) is not None
                created.append(key)
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(set(created)) == 40
    assert len({k.name for k in key_store.list()}) == 40
