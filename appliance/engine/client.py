"""The daemon's handle on one engine worker process: spawn, load, stream, cancel, stop.

Requests are multiplexed over the worker's stdin/stdout by id; the stdout pipe's protocol routes
each frame to the queue of its request as soon as its bytes are in. When the worker dies, every
in-flight request ends with `EngineDead` and the handle reports the exit code, so the manager can
restart or mark it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable

import msgspec

from appliance.engine.messages import (
    HEADER_SIZE,
    MAX_FRAME_BYTES,
    Cancel,
    Delta,
    Done,
    Embed,
    Embeddings,
    Failed,
    FrameTooLarge,
    Load,
    LoadFailed,
    LoadProgress,
    Ping,
    Pong,
    Ready,
    Stats,
    StatsRequest,
    Submit,
    ToWorker,
    encode_frame,
    frame_length,
    from_worker_decoder,
)
from appliance.errors import EngineDead, EngineError, RequestTooLarge, ShuttingDown, UsageError

log = logging.getLogger("appliance.engine")

_ids = itertools.count(1)


class WorkerProcess:
    """One worker process serving one model."""

    def __init__(
        self,
        model_name: str,
        on_progress: Callable[[float], None] | None = None,
        *,
        send_timeout_s: float = 120.0,
    ) -> None:
        self.model_name = model_name
        self.on_progress = on_progress
        self.send_timeout_s = send_timeout_s
        """A worker that takes no bytes for this long is stuck: the send fails, not waits."""
        self.process: asyncio.subprocess.Process | None = None
        self.ready: Ready | None = None
        self._streams: dict[str, asyncio.Queue[Delta | Done | Failed]] = {}
        self._replies: dict[object, asyncio.Future[object]] = {}
        self._ready_future: asyncio.Future[Ready] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.exit_reason: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, load: Load, timeout_s: float, env: dict[str, str] | None = None) -> Ready:
        """Spawn the worker and load the model; raise EngineError with the reason on failure.

        `env` adds to the daemon's environment: the placement's device visibility
        (`CUDA_VISIBLE_DEVICES`, `ASCEND_RT_VISIBLE_DEVICES`).
        """
        loop = asyncio.get_running_loop()
        # The worker's stdout is a pipe read by a protocol (not a StreamReader): each frame is
        # dispatched in the callback that read its bytes, so a token costs the daemon one turn
        # of the event loop instead of three (feed, two readexactly wake-ups).
        read_end, write_end = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "appliance.engine.worker.main",
                stdin=asyncio.subprocess.PIPE,
                stdout=write_end,
                # stderr is inherited: llama.cpp's diagnostics reach the journal with the
                # daemon's.
                env={**os.environ, **env} if env else None,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._ready_future = loop.create_future()
        frames = _FrameReader(self._dispatch, loop.create_future())
        pipe = open(read_end, "rb", buffering=0)  # noqa: SIM115 (the transport closes it)
        await loop.connect_read_pipe(lambda: frames, pipe)
        self._reader = asyncio.create_task(self._watch(frames), name=f"worker-{self.pid}")
        await self._send(load)
        try:
            self.ready = await asyncio.wait_for(asyncio.shield(self._ready_future), timeout_s)
        except TimeoutError:
            await self.stop()
            raise EngineError(
                f"loading {self.model_name!r} took longer than {timeout_s:.0f} s; "
                "raise engine.load_timeout_s or choose a smaller model"
            ) from None
        except EngineError:
            await self.stop()
            raise
        return self.ready

    async def _send(self, message: ToWorker) -> None:
        if not self.alive or self.process is None or self.process.stdin is None:
            raise EngineDead(self._dead_message())
        frame = _encode(message)
        try:
            self.process.stdin.write(frame)
            # Bounded: a worker that stopped reading must not stall the heartbeat behind it.
            await asyncio.wait_for(self.process.stdin.drain(), self.send_timeout_s)
        except (BrokenPipeError, ConnectionResetError):
            raise EngineDead(self._dead_message()) from None
        except TimeoutError:
            raise EngineError(
                f"the worker for {self.model_name!r} took no input for "
                f"{self.send_timeout_s:.0f} s; it is checked and restarted if hung"
            ) from None

    def _dead_message(self) -> str:
        reason = self.exit_reason or "it is not running"
        return f"the worker for model {self.model_name!r} stopped ({reason}); it will be restarted"

    async def _watch(self, frames: _FrameReader) -> None:
        """Wait for the worker's stdout to end, then for its exit; fail what it was serving."""
        assert self.process is not None
        if not await frames.ended:
            log.error("bad frame from worker %s; stopping it", self.pid)
            self.process.kill()
        returncode = await self.process.wait()
        # A supervisor that killed a hung worker has already said why.
        self.exit_reason = self.exit_reason or _describe_exit(returncode)
        self._fail_all(self._dead_message())

    def _dispatch(self, message: object) -> None:
        if isinstance(message, Ready | LoadFailed):
            if self._ready_future and not self._ready_future.done():
                if isinstance(message, Ready):
                    self._ready_future.set_result(message)
                else:
                    self._ready_future.set_exception(
                        EngineError(f"could not load {self.model_name!r}: {message.error}")
                    )
        elif isinstance(message, LoadProgress):
            if self.on_progress is not None:
                self.on_progress(message.fraction)
        elif isinstance(message, Pong | Stats):
            self._resolve(("nonce", message.nonce), message)
        elif isinstance(message, Embeddings):
            self._resolve(message.id, message)
        elif isinstance(message, Delta | Done | Failed):
            stream = self._streams.get(message.id)
            if stream is not None:
                stream.put_nowait(message)
            elif isinstance(message, Failed):
                self._resolve(message.id, message)

    def _resolve(self, key: object, message: object) -> None:
        future = self._replies.pop(key, None)
        if future is not None and not future.done():
            future.set_result(message)

    async def _request(self, key: object, message: ToWorker, timeout_s: float | None) -> object:
        """Send and wait for the reply; `timeout_s` bounds both (TimeoutError; None: no bound
        but the send's own and the worker's life)."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies[key] = future
        try:
            async with asyncio.timeout(timeout_s):
                await self._send(message)
                return await future
        finally:
            self._replies.pop(key, None)

    async def ping(self, timeout_s: float) -> bool:
        """True if the worker's loop answered within the time (it answers between steps)."""
        nonce = next(_ids)
        try:
            await self._request(("nonce", nonce), Ping(nonce), timeout_s)
        except (TimeoutError, EngineError):
            return False
        return True

    async def stats(self, timeout_s: float = 15.0) -> Stats:
        nonce = next(_ids)
        try:
            reply = await self._request(("nonce", nonce), StatsRequest(nonce), timeout_s)
        except TimeoutError:
            raise EngineError(f"the worker for {self.model_name!r} did not answer") from None
        assert isinstance(reply, Stats)
        return reply

    async def embed(
        self, inputs: list[str], normalize: bool, timeout_s: float | None
    ) -> Embeddings:
        request_id = new_request_id()
        answered = False
        try:
            reply = await self._request(request_id, Embed(request_id, inputs, normalize), timeout_s)
            answered = True
        except TimeoutError:
            raise EngineError(
                f"the embeddings took longer than {timeout_s} s; send fewer or shorter texts"
            ) from None
        finally:
            if not answered and self.alive:  # timed out or the client left: stop the work
                with contextlib.suppress(EngineError, UsageError):
                    await self._send(Cancel(request_id))
        if isinstance(reply, Failed):
            raise _error_for(reply)
        assert isinstance(reply, Embeddings)
        return reply

    def abort_streams(self, reason: str) -> int:
        """End every request in progress with `ShuttingDown(reason)` (the daemon's drain ran
        out); each is then cancelled in the worker. Returns how many were ended."""
        for request_id, stream in self._streams.items():
            stream.put_nowait(Failed(request_id, reason, code=ShuttingDown.code))
        return len(self._streams)

    def _fail_all(self, reason: str) -> None:
        if self._ready_future and not self._ready_future.done():
            self._ready_future.set_exception(
                EngineError(f"could not load {self.model_name!r}: the worker exited ({reason})")
            )
        for request_id, stream in self._streams.items():
            stream.put_nowait(Failed(request_id, reason, code="engine_unavailable"))
        for future in self._replies.values():
            if not future.done():
                future.set_exception(EngineDead(reason))

    async def generate(self, submit: Submit) -> AsyncIterator[Delta | Done]:
        """Stream a request's deltas and final Done; raise EngineError if it fails.

        If the consumer stops early (client gone), the worker is told to cancel.
        """
        stream: asyncio.Queue[Delta | Done | Failed] = asyncio.Queue()
        self._streams[submit.id] = stream
        finished = False
        try:
            await self._send(submit)
            while True:
                message = await stream.get()
                if isinstance(message, Failed):
                    # Ended by the daemon, not the worker: the worker must still cancel it.
                    finished = message.code != ShuttingDown.code
                    raise _error_for(message)
                yield message
                if isinstance(message, Done) and message.last:
                    finished = True
                    return
        finally:
            self._streams.pop(submit.id, None)
            if not finished and self.alive:
                with contextlib.suppress(EngineError):
                    await self._send(Cancel(submit.id))

    async def stop(self, grace_s: float = 5.0) -> None:
        """Close the worker's stdin (it exits on EOF); kill it if it does not."""
        if self.process is None:
            return
        if self.process.stdin and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class _FrameReader(asyncio.Protocol):
    """The worker's stdout: length-prefixed frames, each decoded and dispatched as it completes.

    `ended` resolves True at end of stream, False after a bad frame (over the size limit, or
    undecodable: the stream is corrupt from there on, so the reader stops and the worker is
    stopped).
    """

    def __init__(self, dispatch: Callable[[object], None], ended: asyncio.Future[bool]) -> None:
        self._dispatch = dispatch
        self.ended = ended
        self._buffer = bytearray()
        self._transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self.ended.done():
            return
        buffer = self._buffer
        buffer += data
        start = 0
        try:
            while len(buffer) - start >= HEADER_SIZE:
                end = start + HEADER_SIZE + frame_length(buffer[start : start + HEADER_SIZE])
                if len(buffer) < end:
                    break
                message = from_worker_decoder.decode(buffer[start + HEADER_SIZE : end])
                start = end
                self._dispatch(message)
        except Exception:  # over the limit, undecodable, or a bug: never a silent hang
            log.exception("the worker's output could not be read")
            self._stop(ended_well=False)
            return
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop(ended_well=True)

    def _stop(self, *, ended_well: bool) -> None:
        if not self.ended.done():
            self.ended.set_result(ended_well)
        if self._transport is not None:
            self._transport.close()


def _error_for(failed: Failed) -> EngineError | UsageError:
    """The worker's failure codes, as the error classes the API maps to HTTP statuses."""
    error: EngineError | UsageError
    if failed.code == "engine_unavailable":
        error = EngineDead(failed.error)
    elif failed.code == ShuttingDown.code:
        error = ShuttingDown(failed.error)
    elif failed.code in ("invalid_request_error", "context_length_exceeded"):
        error = UsageError(failed.error)  # the request cannot work as written: 400
    else:
        error = EngineError(failed.error)
    error.code = failed.code
    return error


def _encode(message: ToWorker) -> bytes:
    """The frame for a message, or a UsageError saying why the request cannot be sent."""
    try:
        return encode_frame(message)
    except FrameTooLarge as error:
        raise RequestTooLarge(
            f"the request is {error.length:,} bytes once encoded for the engine, more than its "
            f"limit of {MAX_FRAME_BYTES:,}; send a shorter prompt, schema or input"
        ) from None
    except (UnicodeEncodeError, msgspec.EncodeError) as error:
        # JSON may carry lone surrogates (\ud800) that no UTF-8 text can hold.
        raise UsageError(
            f"the request holds text that is not valid Unicode ({error}); send UTF-8 text"
        ) from None


def new_request_id() -> str:
    return f"req-{next(_ids)}"


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {returncode}"
