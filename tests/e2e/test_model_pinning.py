"""Pinning from the CLI: an unpinned model goes when idle past its keep-alive; a pin needs a
loaded model and says so otherwise."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers.daemon import run_cli, start_daemon, stop_daemon


def loaded(home: Path) -> list[dict]:
    return json.loads(run_cli(home, "status", "--json").stdout)["models_loaded"]


def test_an_unpinned_model_is_unloaded_when_idle_and_pinning_needs_a_loaded_model(
    tmp_path: Path, embedded_model: Path
) -> None:
    run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smollm2")
    daemon = start_daemon(tmp_path, APPLIANCE_ENGINE__KEEP_ALIVE_S="1")
    try:
        # The default model is pinned at start: the 1 s keep-alive does not apply to it.
        assert [(m["name"], m["pinned"]) for m in loaded(tmp_path)] == [("smollm2", True)]
        unpinned = run_cli(tmp_path, "models", "unpin", "smollm2").stdout
        assert "smollm2 is unpinned" in unpinned
        for _ in range(200):
            if not loaded(tmp_path):
                break
            time.sleep(0.2)
        assert loaded(tmp_path) == [], "the unpinned model stayed loaded past its keep-alive"
        assert "unloading smollm2: idle past its keep-alive" in daemon.log()

        refused = run_cli(tmp_path, "models", "pin", "smollm2", check=False)
        assert refused.returncode == 1
        assert "model 'smollm2' is not loaded; load it first" in refused.stderr
        missing = run_cli(tmp_path, "models", "pin", "nope", check=False)
        assert "nope" in missing.stderr and "smollm2" in missing.stderr  # names what exists
    finally:
        stop_daemon(daemon)
