"""The daemon's in-memory log tail: what `GET /admin/logs` serves."""

from __future__ import annotations

import logging

from appliance.logbuffer import LogBuffer


def _logger(buffer: LogBuffer) -> logging.Logger:
    log = logging.getLogger("test.logbuffer")
    log.handlers = [buffer]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log


def test_records_come_back_in_order_filtered_by_level_and_after_a_sequence_number() -> None:
    buffer = LogBuffer(capacity=10)
    log = _logger(buffer)
    log.debug("probing %s", "cpu0")
    log.info("loaded")
    log.error("worker died")
    assert [r.message for r in buffer.since()] == ["probing cpu0", "loaded", "worker died"]
    assert [r.message for r in buffer.since(level=logging.WARNING)] == ["worker died"]
    first = buffer.since()[0].seq
    assert [r.message for r in buffer.since(after=first)] == ["loaded", "worker died"]
    assert [r.message for r in buffer.since(limit=1)] == ["worker died"]


def test_only_the_last_records_are_kept_and_exceptions_keep_their_last_line() -> None:
    buffer = LogBuffer(capacity=3)
    log = _logger(buffer)
    for n in range(5):
        log.info("line %d", n)
    assert [r.message for r in buffer.since()] == ["line 2", "line 3", "line 4"]
    try:
        raise ValueError("bad frame")
    except ValueError:
        log.exception("reader stopped")
    assert buffer.since()[-1].message == "reader stopped (ValueError: bad frame)"
