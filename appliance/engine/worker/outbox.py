"""Frames from a worker to the daemon, written as few times as the answer allows.

Each write wakes the daemon, which then spends CPU on every frame (decode it, build an API
chunk, write it to a socket, wake the client): at one fast stream that is a wake-up every
~7 ms, and on a small CPU box the daemon's share is taken from the compute threads of the next
decode step. Two rules cut it without a user noticing:

- Inside `gathered()` (one decode step) frames are written together when it ends: at 8 streams,
  one write a step instead of 8.
- With `interval_s` set, a stream's tokens after its first are held and merged into one Delta
  until the oldest has waited about `interval_s`, so a fast stream sends a few tokens a frame
  (what vLLM's and SGLang's `--stream-interval` do, by time here rather than by token count,
  so a slow model's tokens still go out one by one as soon as they exist). A first token, a
  Done, a Failed or any other message is never held: it goes out at once, after what was held.

May import engine.messages only.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from appliance.engine.messages import (
    Delta,
    Done,
    Failed,
    FrameTooLarge,
    FromWorker,
    encode_frame,
)

StreamKey = tuple[str, int]
"""(request id, choice index): one answer being streamed."""


def merge(first: Delta, second: Delta) -> Delta:
    """One Delta that says what `first` then `second` said."""
    logprobs = None
    if first.logprobs is not None or second.logprobs is not None:
        logprobs = (first.logprobs or []) + (second.logprobs or [])
    return Delta(
        first.id, first.text + second.text, first.tokens + second.tokens, first.index, logprobs
    )


class Outbox:
    def __init__(
        self,
        stream: BinaryIO,
        log: Callable[[str], None],
        interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._log = log
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._gathering = False
        self._frames: list[bytes] = []
        """Encoded and due: written at the next write."""
        self._held: dict[StreamKey, Delta] = {}
        self._held_since = 0.0
        self._streaming: set[StreamKey] = set()
        """Answers whose first token has gone out (their next ones may be held)."""

    def send(self, message: FromWorker) -> None:
        with self._lock:
            if isinstance(message, Delta) and self._hold(message):
                return
            self._release_held()
            self._frames.append(self._encode(message))
            if isinstance(message, Done):
                self._streaming.discard((message.id, message.index))
            elif isinstance(message, Failed):
                self._streaming = {key for key in self._streaming if key[0] != message.id}
            if not self._gathering:
                self._write()

    def flush(self) -> None:
        """Write what is held now (before work that may take long, or before idling)."""
        with self._lock:
            self._release_held()
            self._write()

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """Frames sent inside are written once, at the end; held tokens go with them when any
        frame is due, or when the oldest would otherwise wait past `interval_s` by the end of
        another step as long as this one."""
        with self._lock:
            self._gathering = True
        started = self._clock()
        try:
            yield
        finally:
            with self._lock:
                self._gathering = False
                now = self._clock()
                if self._held and now - self._held_since + (now - started) >= self.interval_s:
                    self._release_held()
                self._write()

    def _hold(self, delta: Delta) -> bool:
        key = (delta.id, delta.index)
        if self.interval_s <= 0 or key not in self._streaming:
            self._streaming.add(key)  # its first token: out at once, for the time to first token
            return False
        held = self._held.get(key)
        if not self._held:
            self._held_since = self._clock()
        self._held[key] = delta if held is None else merge(held, delta)
        return True

    def _release_held(self) -> None:
        self._frames.extend(self._encode(delta) for delta in self._held.values())
        self._held.clear()

    def _encode(self, message: FromWorker) -> bytes:
        try:
            return encode_frame(message)
        except FrameTooLarge as error:
            # The daemon would have to drop the connection over it: fail the request instead.
            request_id = getattr(message, "id", None)
            self._log(f"not sending a {type(message).__name__}: {error}")
            if request_id is None:
                return b""
            return encode_frame(
                Failed(request_id, f"the answer is too large to send ({error})", code="too_large")
            )

    def _write(self) -> None:
        if not self._frames:
            return
        data = b"".join(self._frames)
        self._frames.clear()
        if data:
            self._stream.write(data)
            self._stream.flush()
