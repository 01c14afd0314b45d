"""Lifecycle hooks: the runner of `<hooks_dir>/<event>.d/*`, and the hooks the box ships.

May import `appliance.records`, `appliance.config` and `appliance.errors` only (never api,
engine or ui). Installed as `appliance.firmware_hooks`; README.md holds the hook contract.
"""

from appliance.firmware_hooks.runner import (
    DEFAULT_KILL_GRACE_S,
    DEFAULT_TIMEOUT_S,
    OUTPUT_TAIL_BYTES,
    HookEntry,
    HookEvent,
    HookResult,
    HookRun,
    HookRunner,
    discover_hooks,
    list_hooks,
    run_hooks,
    run_hooks_async,
)

__all__ = [
    "DEFAULT_KILL_GRACE_S",
    "DEFAULT_TIMEOUT_S",
    "OUTPUT_TAIL_BYTES",
    "HookEntry",
    "HookEvent",
    "HookResult",
    "HookRun",
    "HookRunner",
    "discover_hooks",
    "list_hooks",
    "run_hooks",
    "run_hooks_async",
]
