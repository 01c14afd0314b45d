"""umockdev from tests: run a command under a described device set, or drive a testbed in-process.

`umockdev-run --device FILE -- cmd` makes libudev (so pyudev) and sysfs/dev reads in `cmd` see
the devices described in FILE; the real discovery code runs unchanged. For hot-plug, a child
started under `umockdev-wrapper` (the preload library) drives `UMockdevTestbed` through ctypes
(`libumockdev.so.0`): the GObject-introspection binding lives in Debian's system Python, which a
virtual environment does not see, and the C API needs nothing but the library.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures"


def have_umockdev() -> bool:
    return shutil.which("umockdev-run") is not None and shutil.which("umockdev-wrapper") is not None


def run_under(device_file: Path, args: list[str], env: dict[str, str], timeout: float = 60):
    """`umockdev-run --device FILE -- python -m appliance ARGS` with `env` added."""
    return subprocess.run(
        ["umockdev-run", "--device", str(device_file), "--", sys.executable, "-m", "appliance",
         *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **env},
    )  # fmt: skip


class Testbed:
    """The C API of UMockdevTestbed, enough to add, announce and remove devices."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libumockdev.so.0")
        lib.umockdev_testbed_new.restype = ctypes.c_void_p
        lib.umockdev_testbed_add_from_string.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.umockdev_testbed_add_from_string.restype = ctypes.c_int
        lib.umockdev_testbed_uevent.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.umockdev_testbed_remove_device.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._bed = lib.umockdev_testbed_new()

    def add(self, description: str) -> None:
        if not self._lib.umockdev_testbed_add_from_string(self._bed, description.encode(), None):
            raise RuntimeError("umockdev rejected the device description")

    def uevent(self, sys_path: str, action: str) -> None:
        self._lib.umockdev_testbed_uevent(self._bed, sys_path.encode(), action.encode())

    def remove(self, sys_path: str) -> None:
        self._lib.umockdev_testbed_remove_device(self._bed, sys_path.encode())
