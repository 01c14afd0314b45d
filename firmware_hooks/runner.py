"""Runs the executables in `<hooks_dir>/<event>.d/` for one lifecycle event, each with a deadline.

Imports only `appliance.config` (for the default timeout and `HookRunner.from_config`); never api,
engine or ui. A hook's failure, crash, hang or unrunnable file is reported in its `HookResult`
and logged on "appliance.hooks"; it never raises out of the runner. Only caller mistakes (an
unknown event, an environment key outside `APPLIANCE_*`) raise `ValueError`.

One code path does the work, in asyncio (the daemon's world); `run_hooks` is the same coroutine
run to completion for callers without a loop (the CLI), so the two cannot drift apart. Which
files run is `discovery.py`; how one runs as a process group is `process.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Config, HookSettings
from appliance.firmware_hooks.discovery import HookEntry, HookEvent, discover_hooks, list_hooks
from appliance.firmware_hooks.process import OUTPUT_TAIL_BYTES, HookResult, run_one

logger = logging.getLogger("appliance.hooks")

DEFAULT_TIMEOUT_S: float = HookSettings.model_fields["timeout_s"].default
"""Seconds a hook may run; declared once, in `appliance.config.HookSettings`."""
DEFAULT_KILL_GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL to a hook's process group."""
ENV_PREFIX = "APPLIANCE_"

__all__ = [
    "DEFAULT_KILL_GRACE_S", "DEFAULT_TIMEOUT_S", "OUTPUT_TAIL_BYTES", "HookEntry", "HookEvent",
    "HookResult", "HookRun", "HookRunner", "discover_hooks", "list_hooks", "run_hooks",
    "run_hooks_async",
]  # fmt: skip


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
        result = await run_one(path, stdin, child_env, timeout_s, kill_grace_s)
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
