"""The audit log in SQLite: entries, queries, the daily token sum, retention."""

from __future__ import annotations

import time

from appliance.store.audit import AuditEntry, AuditLog


def entry(**fields: object) -> AuditEntry:
    base = {"ts": time.time(), "route": "/v1/chat/completions", "status": 200,
            "duration_s": 0.5, "key_id": 1, "key_name": "alice", "model": "m",
            "tokens_in": 10, "tokens_out": 5}  # fmt: skip
    return AuditEntry(**{**base, **fields})


def test_entries_come_back_newest_first_and_filter_by_key_and_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(tmp_path / "appliance.db")
    log.record(entry(key_name="alice"))
    log.record(entry(key_name="bob", key_id=2, model="other"))
    log.record(entry(key_name="alice", status=429))
    assert [e.status for e in log.query(key="alice")] == [429, 200]
    assert [e.key_name for e in log.query(model="other")] == ["bob"]
    assert log.query(limit=1)[0].status == 429
    assert all(e.prompt is None for e in log.query())


def test_tokens_since_sums_one_keys_prompt_and_answer_tokens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(tmp_path / "appliance.db")
    now = time.time()
    log.record(entry(ts=now - 90_000))  # yesterday: not counted
    log.record(entry(ts=now, tokens_in=100, tokens_out=20))
    log.record(entry(ts=now, key_id=2, tokens_in=999))
    assert log.tokens_since(1, now - 3600) == 120


def test_prune_removes_only_entries_past_the_retention(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(tmp_path / "appliance.db")
    now = time.time()
    log.record(entry(ts=now - 10 * 86400))
    log.record(entry(ts=now - 86400))
    assert log.prune(retention_days=7, now=now) == 1
    assert len(log.query()) == 1
