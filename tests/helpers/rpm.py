"""Reading a built .rpm's metadata with `rpm -qp`, for the package tests.

Test helper. Skips (naming the fix) where rpm is not installed or the package is not built.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def query_rpm(package: Path, build_command: str, *args: str) -> str:
    """`rpm -qp ARGS PACKAGE`'s output; skips when rpm or the package is missing."""
    if shutil.which("rpm") is None:
        pytest.skip("rpm is not installed (make test-system-deps)")
    if not package.exists():
        pytest.skip(f"{package} is not built ({build_command})")
    return subprocess.run(["rpm", "-qp", *args, str(package)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
