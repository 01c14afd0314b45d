"""Layer boundaries, checked at run time in a fresh interpreter (Harlequin's habit).

The TUI and the CLI's client must not drag in the daemon's web stack, and an engine worker
must not load the API or the store: each costs start-up time and couples layers that are
meant to fail and upgrade independently.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_modules(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("appliance.ui.app", {"fastapi", "appliance.api.app", "appliance.store", "llama_cpp"}),
        ("appliance.client", {"fastapi", "appliance.store", "appliance.engine", "llama_cpp"}),
        (
            "appliance.engine.worker.main",
            {"fastapi", "appliance.api", "appliance.store", "textual"},
        ),
        ("appliance.cli.main", {"fastapi", "llama_cpp", "textual"}),
    ],
)
def test_module_does_not_load_other_layers(module: str, forbidden: set[str]) -> None:
    leaked = forbidden & loaded_modules(module)
    assert not leaked, f"importing {module} loaded {sorted(leaked)}"
