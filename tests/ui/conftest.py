"""A daemon of the console tests' own (keys created, models imported, deleted, unloaded, hooks
that fail), so the session's shared daemon stays as other tests expect it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.console import set_up_before_start
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon

FAILING_BOOT_HOOK = """#!/bin/sh
echo "checking the NPU firmware"
echo "firmware 7.1 is older than the 7.3 this driver needs" >&2
exit 3
"""


@pytest.fixture(scope="session")
def console_daemon(
    tmp_path_factory: pytest.TempPathFactory, embedded_model: Path
) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("console-home")
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    hook = home / "hooks.d" / "boot.d" / "50-check-firmware"
    hook.parent.mkdir(parents=True)
    hook.write_text(FAILING_BOOT_HOOK)
    hook.chmod(0o755)
    set_up_before_start(home)
    handle = start_daemon(home)
    yield handle
    stop_daemon(handle)
