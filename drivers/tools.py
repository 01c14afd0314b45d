"""Running vendor command-line tools (`npu-smi`, `nvidia-smi`) so that they can never hang us.

Imports only the standard library. Every failure (missing tool, non-zero exit, empty output,
a hang) comes back as a `ToolResult` with a one-line `problem`, never as an exception: a broken
tool must turn into a device record with a reason, not into a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# npu-smi is installed in either of these, and root's PATH on some distributions lacks /sbin
# entries (accelerators.md 1.4: "both seen in the wild").
EXTRA_DIRS = ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin")


@dataclass(frozen=True)
class ToolResult:
    stdout: str
    problem: str = ""
    """Empty when the tool ran and printed something; else why its output cannot be used."""

    @property
    def ok(self) -> bool:
        return not self.problem


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Only when PATH has no such tool: a test's fake on PATH must win over the real one.
    return shutil.which(name, path=os.pathsep.join(EXTRA_DIRS))


def run_tool(argv: Sequence[str], timeout_s: float) -> ToolResult:
    """Run a vendor tool; kill its whole process group if it outlives `timeout_s`.

    A process group, because npu-smi and nvidia-smi wrappers spawn helpers: killing only the
    child would leave a grandchild holding the pipe open, and reading it would hang anyway.
    """
    name = argv[0]
    executable = find_tool(name)
    if executable is None:
        return ToolResult("", f"{name} is not installed (not found on PATH)")
    try:
        process = subprocess.Popen(
            [executable, *argv[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as error:
        return ToolResult("", f"{name} could not be started: {error.strerror or error}")
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return ToolResult("", f"{name} hung and was killed after {timeout_s:g} s")
    if process.returncode != 0:
        detail = _last_line(stderr) or _last_line(stdout) or "no message"
        return ToolResult(stdout, f"{name} failed with exit status {process.returncode}: {detail}")
    if not stdout.strip():
        return ToolResult("", f"{name} printed nothing")
    return ToolResult(stdout)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
