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
    runtime = status.runtime
    if runtime is not None:
        if runtime.cpu_variant is not None and not runtime.cpu_variant.variant:
            found.append(f"llama.cpp cannot run here: {runtime.cpu_variant.reason}")
        if runtime.needed_runtime:
            found.append(runtime.needed_runtime)
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


def runtime_line(report: RuntimeReport | None) -> str:
    """One line: the llama.cpp build and the self-tested CPU variant (`w` shows why)."""
    if report is None:
        return "llama.cpp runtime: being probed (CPU variant self-test)"
    version = f" {report.llama_cpp_version}" if report.llama_cpp_version else ""
    line = f"llama.cpp{version}, {report.llama_cpp_runtime or 'no'} build"
    choice = report.cpu_variant
    if choice is not None:
        rejected = [v.name for v in choice.verdicts if v.status == "rejected"]
        line += f", CPU variant {choice.variant or 'none'} (self-tested"
        line += f"; rejected: {', '.join(rejected)})" if rejected else ")"
    return line


def runtime_details(report: RuntimeReport | None) -> str:
    """Why this CPU variant: the verdict on each one the self-test considered."""
    if report is None or report.cpu_variant is None:
        return "The llama.cpp runtime is being probed; ask again in a minute."
    choice = report.cpu_variant
    lines = [choice.reason, "", f"library: {choice.path}", ""]
    for verdict in choice.verdicts:
        speed = ""
        if verdict.decode_tok_s:
            speed = f" ({verdict.decode_tok_s:.0f} tok/s generating)"
        lines.append(f"{verdict.name:16} {verdict.status}{speed}: {verdict.reason}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
