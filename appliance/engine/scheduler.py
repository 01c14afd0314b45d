"""Admission to a model's slots: a bounded wait, served round-robin across API keys.

The daemon side of "when slots are scarce, one script cannot starve the office": at most
`capacity` sequences (the model's slots) are handed to its worker at once; requests beyond
that wait here, one queue per key, and each freed slot goes to the next key in turn rather
than to the oldest request. A request with `n` choices takes `n` slots (at most all of them).
Beyond `queue_size` waiting requests, or a key's own `max_streams`, admission fails at once
with 429. Pure asyncio; may import errors only.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from appliance.errors import Overloaded, RateLimited, ShuttingDown

RETRY_AFTER_S = 2


@dataclass(eq=False)
class _Waiter:
    key: str
    need: int
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Lane:
    """One model's slots: how many are busy and who waits for them, per key in turn."""

    busy: int = 0
    queues: dict[str, deque[_Waiter]] = field(default_factory=dict)
    """Waiting requests per key."""
    streams: Counter[str] = field(default_factory=Counter)
    """Streams each key has admitted or waiting."""
    served: dict[str, int] = field(default_factory=dict)
    """When each key last got a slot (a grant counter): the longest-unserved key goes next."""
    grants: int = 0

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def dispatch(self, capacity: int) -> None:
        while self.queues:
            # Round-robin: the waiting key served longest ago (or never) goes first; a
            # request that does not fit yet holds its turn, so large `n` is not starved.
            key = min(self.queues, key=lambda k: self.served.get(k, -1))
            queue = self.queues[key]
            waiter = queue[0]
            if self.busy + waiter.need > capacity:
                return
            queue.popleft()
            if not queue:
                del self.queues[key]
            self.grants += 1
            self.served[key] = self.grants
            self.busy += waiter.need
            waiter.granted.set_result(None)


class Scheduler:
    """Per-model admission; the API calls `check` before answering, then holds `slots`."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, model: str) -> _Lane:
        return self._lanes.setdefault(model, _Lane())

    def check(
        self, model: str, key: str, n: int, *, capacity: int, max_streams: int | None = None
    ) -> None:
        """Raise 429 now if the request could not even wait (before a stream's headers)."""
        lane = self._lane(model)
        if max_streams is not None and lane.streams[key] + n > max_streams:
            raise RateLimited(
                f"limit max_streams reached: this API key may have {max_streams} streams at "
                f"once and has {lane.streams[key]}; wait for one to finish",
                retry_after_s=RETRY_AFTER_S,
                limit="max_streams",
            )
        must_wait = lane.busy + min(n, capacity) > capacity or lane.waiting > 0
        if must_wait and lane.waiting + 1 > self.queue_size:
            raise Overloaded(
                f"model {model!r} is busy: {lane.busy} of {capacity} slots taken and "
                f"{lane.waiting} requests waiting, its limit; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )

    @asynccontextmanager
    async def slots(self, model: str, key: str, n: int, *, capacity: int) -> AsyncIterator[None]:
        """Hold `n` of the model's slots (all of them at most) while the body runs."""
        lane = self._lane(model)
        waiter = _Waiter(key, max(1, min(n, capacity)))
        lane.streams[key] += n
        lane.queues.setdefault(key, deque()).append(waiter)
        lane.dispatch(capacity)
        try:
            await waiter.granted
            yield
        finally:
            lane.streams[key] -= n
            if not lane.streams[key]:
                del lane.streams[key]
            granted = waiter.granted
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                lane.busy -= waiter.need
            else:
                waiter.granted.cancel()
                queue = lane.queues.get(key)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del lane.queues[key]
            lane.dispatch(capacity)

    def abort_waiting(self, reason: str) -> int:
        """Fail every request still waiting for a slot with `ShuttingDown(reason)`.

        Returns how many were waiting."""
        aborted = 0
        for lane in self._lanes.values():
            for queue in lane.queues.values():
                for waiter in queue:
                    if not waiter.granted.done():
                        waiter.granted.set_exception(ShuttingDown(reason))
                        aborted += 1
            lane.queues.clear()
        return aborted

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """(busy slots, waiting requests) per model, for metrics and status."""
        return {model: (lane.busy, lane.waiting) for model, lane in self._lanes.items()}


class KeyRates:
    """Requests per minute per API key, over a sliding window of the last 60 seconds."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def admit(self, key: str, per_minute: int, now: float) -> None:
        """Count one request, or raise RateLimited saying when the next one may come."""
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= self.WINDOW_S:
            seen.popleft()
        if len(seen) >= per_minute:
            wait = max(1, int(self.WINDOW_S - (now - seen[0])) + 1)
            raise RateLimited(
                f"limit requests_per_minute reached: this API key may send {per_minute} "
                f"requests per minute; retry in {wait} s",
                retry_after_s=wait,
                limit="requests_per_minute",
            )
        seen.append(now)
