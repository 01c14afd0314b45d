"""What deserves an administrator's attention, derived from what the daemon reports.

Pure functions over admin-protocol records (no I/O), so they are easy to test and reuse.
"""

from __future__ import annotations

import time

from appliance.api.admin.protocol import DaemonStatus, HookRunInfo, LogLine
from appliance.records import DeviceTelemetry, RuntimeReport

RECENT_S = 3600.0
"""Hook failures and logged errors older than this no longer raise an alert."""


def alerts(
    status: DaemonStatus,
    telemetry: DeviceTelemetry | None,
    hooks: list[HookRunInfo],
    errors: list[LogLine],
    now: float | None = None,
) -> list[str]:
    now = time.time() if now is None else now
    found = [f"device {d.id} unusable: {d.reason}" for d in status.devices if not d.usable]
    if telemetry:
        found += [
            f"device {sample.device_id}: no telemetry ({sample.error})"
            for sample in telemetry.latest.values()
            if not sample.available
        ]
    for model in status.models_loaded:
        if model.state == "failed":
            found.append(f"model {model.name} failed: {model.error}")
        if model.restarts:
            found.append(f"model {model.name}: worker restarted {model.restarts} time(s)")
    found += [
        f"hook {run.event}/{run.name} failed"
        + (" (timed out)" if run.timed_out else f" (exit {run.exit_code})")
        for run in hooks
        if not run.ok and now - run.started_at < RECENT_S
    ]
    for line in errors[-3:]:
        # A failed load is both a model state and a logged error: say it once.
        if now - line.timestamp < RECENT_S and not any(line.message in a for a in found):
            found.append(f"{line.logger}: {line.message}")
    return found


def runtime_line(report: RuntimeReport | None, status: DaemonStatus) -> str:
    """The CPU runtime and why it was chosen, from whichever record the daemon fills.

    Issue 8 adds the chosen CPU variant to the runtime report; until a daemon reports it, the
    line names the llama.cpp build and backends only.
    """
    if report is None:
        return "runtime: not probed yet"
    extra = {**(report.model_extra or {}), **report.__dict__}
    runtime = getattr(status, "runtime", None)
    if runtime is not None:
        extra.update(runtime if isinstance(runtime, dict) else vars(runtime))
    parts = [f"llama.cpp {report.llama_cpp_version or 'not installed'}"]
    if report.llama_cpp_backends:
        parts.append("backends " + ", ".join(report.llama_cpp_backends))
    variant = extra.get("cpu_variant") or extra.get("variant")
    if variant:
        why = extra.get("cpu_variant_reason") or extra.get("reason") or ""
        parts.append(f"CPU variant {variant}" + (f" ({why})" if why else ""))
    return " · ".join(parts)
