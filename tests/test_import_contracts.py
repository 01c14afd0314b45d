"""The layering contracts in pyproject.toml ([tool.importlinter]) hold: a wrong-way import
(the UI reaching the store, a worker loading the API, a driver importing the daemon) fails here.

import-linter reads packages from disk, and drivers/, ui/ and firmware_hooks/ live outside
appliance/ in the checkout; so the test lays the installed layout out in a temporary folder
(as the wheel does) and runs `lint-imports` on it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"drivers": "drivers", "ui": "ui", "firmware_hooks": "firmware_hooks"}


def test_every_import_contract_is_kept(tmp_path: Path) -> None:
    package = tmp_path / "appliance"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "appliance", package, ignore=ignore)
    for name, folder in MAPPED.items():
        shutil.copytree(ROOT / folder, package / name, ignore=ignore)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), str(ROOT / "pyproject.toml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout
    assert "Contracts: 12 kept, 0 broken." in result.stdout
