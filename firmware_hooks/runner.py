"""Runs the executables in `<hooks_dir>/<event>.d/` for one lifecycle event, each with a deadline.

Imports only `appliance.config` (for the default timeout and `HookRunner.from_config`); never api,
engine or ui. A hook's failure, crash, hang or unrunnable file is reported in its `HookResult`
and logged on "appliance.hooks"; it never raises out of the runner. Only caller mistakes (an
unknown event, an environment key outside `APPLIANCE_*`) raise `ValueError`.

One code path does the work, in asyncio (the daemon's world); `run_hooks` is the same coroutine
run to completion for callers without a loop (the CLI), so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from appliance.config import Config, HookSettings

logger = logging.getLogger("appliance.hooks")

DEFAULT_TIMEOUT_S: float = HookSettings.model_fields["timeout_s"].default
"""Seconds a hook may run; declared once, in `appliance.config.HookSettings`."""
DEFAULT_KILL_GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL to a hook's process group."""
OUTPUT_TAIL_BYTES = 4096
"""How much of the end of stdout and of stderr a result keeps (the end holds the error)."""
ENV_PREFIX = "APPLIANCE_"

# Files package managers and editors leave beside a hook; running them would run a stale or
# half-merged copy (run-parts and systemd's conf.d readers skip the same families).
_BACKUP_SUFFIXES = ("~", ".rpmnew", ".rpmsave", ".rpmorig")
_BACKUP_INFIXES = (".dpkg-",)
_POLL_S = 0.02


class HookEvent(StrEnum):
    """Lifecycle events; each has its own folder `<event>.d` under the hooks directory."""

    BOOT = "boot"
    DEVICE_ADDED = "device-added"
    DEVICE_REMOVED = "device-removed"
    MODEL_LOADING = "model-loading"
    MODEL_LOADED = "model-loaded"
    MODEL_UNLOADED = "model-unloaded"
    UPDATE = "update"


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


def discover_hooks(hooks_dir: Path, event: HookEvent | str) -> list[Path]:
    """The hooks for `event`, in the order they run (sorted by file name, C collation).

    A missing hooks directory or event folder means no hooks. Hidden files, backups left by
    editors and package managers, and subfolders are skipped quietly; files that look like hooks
    but cannot be run (not executable, world-writable, dangling link) are skipped with a warning,
    since they are almost always an administrator's mistake.
    """
    folder = Path(hooks_dir) / f"{HookEvent(event)}.d"
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        logger.warning("hooks: %s is not a directory; no %s hooks run", folder, event)
        return []
    except PermissionError:
        logger.warning("hooks: %s is not readable by this user; no %s hooks run", folder, event)
        return []
    hooks = []
    for entry in entries:
        reason = _skip_reason(entry)
        if reason is None:
            hooks.append(Path(entry.path))
        elif reason:
            logger.warning("hooks: skipping %s: %s", entry.path, reason)
        else:
            logger.debug("hooks: ignoring %s", entry.path)
    return hooks


@dataclass(frozen=True, slots=True)
class HookEntry:
    """One file in an event folder, and whether the runner would run it."""

    event: str
    name: str
    path: Path
    runs: bool
    problem: str = ""
    """Why it is refused (not executable, world-writable, dangling link); empty when it runs."""
    target: Path | None = None
    """Where a symlinked hook points (the shipped hooks are links into the venv)."""


def list_hooks(hooks_dir: Path) -> list[HookEntry]:
    """Every hook-like file of every event, with the runner's verdict (for `appliance hooks
    list` and the doctor); quietly ignored files (backups, hidden, folders) are left out."""
    found = []
    for event in HookEvent:
        folder = Path(hooks_dir) / f"{event}.d"
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            reason = _skip_reason(entry)
            if reason == "":
                continue
            path = Path(entry.path)
            target = Path(os.readlink(path)) if path.is_symlink() else None
            found.append(HookEntry(str(event), entry.name, path, reason is None, reason or "",
                                   target))  # fmt: skip
    return found


def _skip_reason(entry: os.DirEntry[str]) -> str | None:
    """None to run the entry, "" to ignore it quietly, else why it is refused."""
    name = entry.name
    if name.startswith(".") or name.endswith(_BACKUP_SUFFIXES):
        return ""
    if any(infix in name for infix in _BACKUP_INFIXES):
        return ""
    try:
        info = entry.stat()  # follows symlinks: a linked hook runs its target
    except FileNotFoundError:
        return "dangling symlink"
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return ""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(entry.path, os.X_OK):
        return "not executable (chmod +x to enable it)"
    # Anyone could replace a world-writable hook's contents and have the daemon run them.
    if info.st_mode & stat.S_IWOTH:
        return "world-writable; refusing to run it"
    return None


def _hook_environment(event: HookEvent, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The daemon's environment plus `APPLIANCE_EVENT` and the caller's `APPLIANCE_*` values."""
    extra = dict(extra or {})
    for key, value in extra.items():
        if not key.startswith(ENV_PREFIX) or key == "APPLIANCE_EVENT":
            raise ValueError(
                f"hook environment key {key!r} must start with {ENV_PREFIX} "
                "and must not be APPLIANCE_EVENT"
            )
        if not isinstance(value, str):
            raise ValueError(f"hook environment value for {key} must be a str, got {value!r}")
    return {**os.environ, **extra, "APPLIANCE_EVENT": str(event)}


async def run_hooks_async(
    event: HookEvent | str,
    payload: Mapping[str, Any] | None = None,
    *,
    hooks_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kill_grace_s: float = DEFAULT_KILL_GRACE_S,
) -> list[HookResult]:
    """Run every hook of `event` one after another; a failed hook does not stop the next.

    `payload` is written to each hook's stdin as one JSON document (non-JSON values such as
    paths are written as strings). Cancelling the task kills the running hook's process group.
    """
    event = HookEvent(event)
    child_env = _hook_environment(event, env)
    stdin = (json.dumps(dict(payload or {}), default=str) + "\n").encode()
    results = []
    for path in discover_hooks(hooks_dir, event):
        result = await _run_one(path, stdin, child_env, timeout_s, kill_grace_s)
        _log_result(event, result)
        results.append(result)
    return results


def run_hooks(
    event: HookEvent | str,
    payload: Mapping[str, Any] | None = None,
    *,
    hooks_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kill_grace_s: float = DEFAULT_KILL_GRACE_S,
) -> list[HookResult]:
    """`run_hooks_async` for code without an event loop (the CLI); same arguments and results.

    Raises RuntimeError when called from inside a running loop: use `run_hooks_async` there, or
    the loop would stall for as long as the hooks run.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop here: the expected case
    else:
        raise RuntimeError("run_hooks() called inside a running event loop; use run_hooks_async()")
    return asyncio.run(
        run_hooks_async(
            event,
            payload,
            hooks_dir=hooks_dir,
            env=env,
            timeout_s=timeout_s,
            kill_grace_s=kill_grace_s,
        )
    )


RECENT_RUNS = 100
"""How many hook runs the daemon's runner remembers (the console's hooks page)."""


@dataclass(frozen=True, slots=True)
class HookRun:
    """One hook that ran for an event, as the daemon remembers it."""

    event: str
    started_at: float
    """Seconds since the epoch when the hook started."""
    result: HookResult


@dataclass(frozen=True, slots=True)
class HookRunner:
    """The hooks directory and deadlines bound once, as the daemon holds them."""

    hooks_dir: Path
    timeout_s: float = DEFAULT_TIMEOUT_S
    kill_grace_s: float = DEFAULT_KILL_GRACE_S
    recent: deque[HookRun] = field(
        default_factory=lambda: deque(maxlen=RECENT_RUNS), compare=False, repr=False
    )
    """The last `RECENT_RUNS` hook runs, oldest first, for the admin API and the console."""

    @classmethod
    def from_config(cls, config: Config) -> HookRunner:
        return cls(hooks_dir=config.hooks_dir, timeout_s=config.hooks.timeout_s)

    async def run_async(
        self,
        event: HookEvent | str,
        payload: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[HookResult]:
        results = await run_hooks_async(
            event,
            payload,
            hooks_dir=self.hooks_dir,
            env=env,
            timeout_s=self.timeout_s,
            kill_grace_s=self.kill_grace_s,
        )
        now = time.time()
        self.recent.extend(HookRun(str(event), now - r.duration_s, r) for r in results)
        return results

    def run(
        self,
        event: HookEvent | str,
        payload: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[HookResult]:
        return run_hooks(
            event,
            payload,
            hooks_dir=self.hooks_dir,
            env=env,
            timeout_s=self.timeout_s,
            kill_grace_s=self.kill_grace_s,
        )


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


async def _run_one(
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


def _log_result(event: HookEvent, result: HookResult) -> None:
    where = f"{event}.d/{result.name}"
    last_line = (result.stderr_tail.strip().splitlines() or [""])[-1]
    if result.timed_out:
        logger.warning(
            "hook %s timed out after %.1f s and was killed (exit %s) %s",
            where,
            result.duration_s,
            result.exit_code,
            last_line,
        )
    elif result.ok:
        logger.info("hook %s succeeded in %.2f s", where, result.duration_s)
    else:
        logger.warning(
            "hook %s failed with exit %s in %.2f s: %s",
            where,
            result.exit_code,
            result.duration_s,
            last_line or "(no stderr)",
        )
