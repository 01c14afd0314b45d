"""One hook as a process: its own process group, stdin payload, output tails, deadline, kills.

Imports the standard library only. Part of the hook runner (`runner.py` decides what to run and
logs the results); whatever the hook does, `run_one` returns a `HookResult` and never raises
(except when cancelled, after killing the group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("appliance.hooks")

OUTPUT_TAIL_BYTES = 4096
"""How much of the end of stdout and of stderr a result keeps (the end holds the error)."""
_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class HookResult:
    """What one hook did."""

    name: str
    """File name inside the event folder, e.g. `10-check-driver`."""
    path: Path
    """Full path that was executed."""
    exit_code: int | None
    """Exit status; negative is the signal that ended it (as `subprocess` reports it); 126/127
    when it could not be executed at all; None if it survived SIGKILL (stuck in the kernel)."""
    timed_out: bool
    """True when it was still running at the deadline and was killed."""
    duration_s: float
    """Wall time from start until it and its process group were gone."""
    stdout_tail: str
    """The last `OUTPUT_TAIL_BYTES` of stdout, decoded as UTF-8 with replacement."""
    stderr_tail: str
    """The last `OUTPUT_TAIL_BYTES` of stderr, decoded as UTF-8 with replacement."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class _Tail:
    """Keeps only the last `limit` bytes of a stream, so a chatty hook cannot fill memory."""

    def __init__(self, limit: int = OUTPUT_TAIL_BYTES) -> None:
        self.limit = limit
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: -self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


async def run_one(
    path: Path, stdin: bytes, env: dict[str, str], timeout_s: float, grace_s: float
) -> HookResult:
    started = time.monotonic()
    try:
        # A new session makes the hook the leader of its own process group, so one killpg
        # reaches everything it started (unless a descendant calls setsid itself).
        proc = await asyncio.create_subprocess_exec(
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        # Bad interpreter line, missing file, noexec mount: report it like a shell would.
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        return HookResult(
            path.name, path, code, False, time.monotonic() - started, "", f"cannot execute: {exc}"
        )

    out, err = _Tail(), _Tail()
    io_done = asyncio.ensure_future(
        asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err), _feed(proc.stdin, stdin))
    )
    timed_out = False
    try:
        try:
            await asyncio.wait_for(_main_process_exit(proc), timeout_s)
        except TimeoutError:
            timed_out = True
        # Always: a hook's processes do not outlive it (as systemd does for a finished oneshot).
        await _terminate_group(proc.pid, grace_s)
        try:
            await asyncio.wait_for(_exited(proc, io_done), grace_s)
        except TimeoutError:
            # Still open after the group died: a descendant that left the group (setsid) holds
            # the pipes, or the hook is stuck in the kernel. Stop reading and report what we have.
            _abandon(proc, io_done, path)
    except asyncio.CancelledError:
        _signal_group(proc.pid, signal.SIGKILL)
        io_done.cancel()
        raise
    return HookResult(
        name=path.name,
        path=path,
        exit_code=proc.returncode,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        stdout_tail=out.text(),
        stderr_tail=err.text(),
    )


async def _main_process_exit(proc: asyncio.subprocess.Process) -> None:
    # Not proc.wait(): it also waits for stdout and stderr to close (CPython 3.11.x, 3.12+), so
    # a hook that ran `daemon &` without redirecting would look hung until its deadline.
    # returncode is set as soon as the child watcher reaps the process.
    while proc.returncode is None:
        await asyncio.sleep(_POLL_S)


async def _exited(proc: asyncio.subprocess.Process, io_done: asyncio.Future[Any]) -> None:
    """Output read to the end and the process reaped."""
    await asyncio.shield(io_done)
    await proc.wait()


async def _pump(stream: asyncio.StreamReader | None, tail: _Tail) -> None:
    assert stream is not None
    while chunk := await stream.read(65536):
        tail.feed(chunk)


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    assert stream is not None
    # A hook may exit without reading its stdin; that is its right, not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the process group; False once no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Some member runs as another user; it is alive, and we cannot do more about it.
        return True
    return True


async def _terminate_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the group, give it `grace_s` to exit, then SIGKILL whatever is left."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        if not _group_alive(pgid):
            return
    _signal_group(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Whether any process in the group is still running (zombies do not count)."""
    if not _signal_group(pgid, 0):
        return False
    # kill(pgid, 0) also succeeds while only zombies remain, and orphaned grandchildren stay
    # zombies for good under a PID 1 that does not reap (a container without an init), which
    # would cost every hook the whole grace. /proc tells the running from the dead.
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return True
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        # After "(comm)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _abandon(proc: asyncio.subprocess.Process, io_done: asyncio.Future[Any], path: Path) -> None:
    io_done.cancel()
    if proc.returncode is None:
        logger.error("hooks: %s survived SIGKILL (stuck in the kernel?); leaving it", path)
    else:
        logger.warning("hooks: %s left a process outside its group holding its output", path)
    # The subprocess transport only closes itself once every pipe hits EOF, which may never
    # happen now; close it so its file descriptors are not leaked.
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()
