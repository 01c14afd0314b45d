"""Admission to a model's slots: bounded waiting, round-robin across keys, per-key streams."""

from __future__ import annotations

import asyncio

import pytest

from appliance.engine.scheduler import KeyRates, Scheduler
from appliance.errors import Overloaded, RateLimited, ShuttingDown


async def _hold(scheduler: Scheduler, key: str, order: list[str], release: asyncio.Event,
                n: int = 1) -> None:  # fmt: skip
    async with scheduler.slots("m", key, n, capacity=1):
        order.append(key)
        await release.wait()


async def test_freed_slots_go_round_robin_across_keys_not_to_the_oldest_request() -> None:
    scheduler = Scheduler(queue_size=10)
    order: list[str] = []
    gates = {name: asyncio.Event() for name in ("first", "flood", "office")}
    running = [asyncio.create_task(_hold(scheduler, "flood", order, gates["first"]))]
    await asyncio.sleep(0)
    # The script queues four requests before anyone from the office asks once.
    for _ in range(4):
        running.append(asyncio.create_task(_hold(scheduler, "flood", order, gates["flood"])))
    await asyncio.sleep(0)
    running.append(asyncio.create_task(_hold(scheduler, "office", order, gates["office"])))
    await asyncio.sleep(0)
    assert scheduler.snapshot()["m"] == (1, 5)
    gates["first"].set()
    gates["flood"].set()
    gates["office"].set()
    await asyncio.gather(*running)
    # After the script's first request, the office goes next, not after the four queued.
    assert order == ["flood", "office", "flood", "flood", "flood", "flood"]


async def test_waiting_beyond_the_queue_size_is_refused_with_429() -> None:
    scheduler = Scheduler(queue_size=1)
    release = asyncio.Event()
    held = [asyncio.create_task(_hold(scheduler, "a", [], release)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        scheduler.check("m", "b", 1, capacity=1)
    assert refused.value.retry_after_s > 0 and "1 of 1 slots" in refused.value.message
    release.set()
    await asyncio.gather(*held)
    scheduler.check("m", "b", 1, capacity=1)  # free again


async def test_a_key_over_its_stream_limit_is_told_which_limit() -> None:
    scheduler = Scheduler(queue_size=10)
    release = asyncio.Event()
    held = asyncio.create_task(_hold(scheduler, "a", [], release, n=2))
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as refused:
        scheduler.check("m", "a", 1, capacity=4, max_streams=2)
    assert refused.value.limit == "max_streams" and "max_streams" in refused.value.message
    scheduler.check("m", "b", 1, capacity=4, max_streams=2)  # other keys are not affected
    release.set()
    await held


async def test_n_choices_take_n_slots() -> None:
    scheduler = Scheduler(queue_size=10)
    release = asyncio.Event()

    async def hold(n: int) -> None:
        async with scheduler.slots("m", "a", n, capacity=4):
            await release.wait()

    held = asyncio.create_task(hold(3))
    await asyncio.sleep(0)
    assert scheduler.snapshot()["m"] == (3, 0)
    second = asyncio.create_task(hold(2))
    await asyncio.sleep(0)
    assert scheduler.snapshot()["m"] == (3, 1), "2 more do not fit in the 1 slot left"
    release.set()
    await asyncio.gather(held, second)
    assert scheduler.snapshot()["m"] == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    scheduler = Scheduler(queue_size=10)
    release = asyncio.Event()
    held = asyncio.create_task(_hold(scheduler, "a", [], release))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(_hold(scheduler, "b", [], release))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert scheduler.snapshot()["m"] == (1, 0)
    release.set()
    await held


def test_requests_per_minute_refuse_the_next_one_until_the_window_moves() -> None:
    rates = KeyRates()
    for second in range(3):
        rates.admit("a", 3, now=100.0 + second)
    with pytest.raises(RateLimited) as refused:
        rates.admit("a", 3, now=110.0)
    assert refused.value.limit == "requests_per_minute"
    assert 0 < refused.value.retry_after_s <= 51
    rates.admit("b", 3, now=110.0)
    rates.admit("a", 3, now=160.5)  # the first one left the window


async def test_requests_still_waiting_when_the_daemon_stops_fail_and_free_nothing() -> None:
    scheduler = Scheduler(queue_size=10)
    release = asyncio.Event()
    running = asyncio.create_task(_hold(scheduler, "a", [], release))
    waiting = [asyncio.create_task(_hold(scheduler, key, [], release)) for key in "bc"]
    await asyncio.sleep(0)
    assert scheduler.abort_waiting("shutting down") == 2
    for task in waiting:
        with pytest.raises(ShuttingDown, match="shutting down"):
            await task
    assert scheduler.snapshot()["m"] == (1, 0)  # the running one keeps its slot
    release.set()
    await running
    assert scheduler.snapshot()["m"] == (0, 0)
