"""Shared fixtures: the embedded SmolLM2 model and one real daemon for the whole session.

The daemon is `appliance serve` as a subprocess on a temporary APPLIANCE_HOME, listening on a
free loopback port, with the real model loaded in a real worker process (as llama.cpp's
`ServerPreset` and vLLM's `RemoteOpenAIServer` do). Tests that need a model share it.
Helpers live in `tests/helpers/` (importable as `helpers.*`), not here: several conftest.py
files exist and must not be imported by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.runtime import RUNTIME_CACHE, runtime_report

# One CPU-variant verdict for the session: every Config() made in this process and every daemon
# the tests start (helpers.daemon passes it on) reads the same cache.
os.environ["APPLIANCE_RUNTIME__CACHE_DIR"] = str(RUNTIME_CACHE)

from appliance.store.embedded import embedded_model_path
from helpers.console import set_up_before_start
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon


@pytest.fixture(scope="session", autouse=True)
def cpu_variant_verdict() -> None:
    """The CPU variant self-test, once, before any daemon starts: daemons then read its verdict
    from RUNTIME_CACHE instead of each spending their readiness timeout on it."""
    report = runtime_report()
    assert report.cpu_variant and report.cpu_variant.variant, report


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    # Not a skip: without the model the skeleton's core is untested, so fail loudly.
    return embedded_model_path()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("home")
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    set_up_before_start(home)  # a box past its first-boot wizard (tests/ui/test_wizard.py walks it)
    handle = start_daemon(home)
    yield handle
    stop_daemon(handle)
