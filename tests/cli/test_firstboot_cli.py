"""`appliance firstboot` (ai-appliance-firstboot.service) on a fresh home."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from helpers.daemon import run_cli


def test_first_boot_probes_runs_boot_hooks_creates_an_admin_key_and_suggests_a_model(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "hook-payload"
    hook = tmp_path / "hooks.d" / "boot.d" / "10-record"
    hook.parent.mkdir(parents=True)
    hook.write_text(f"#!/bin/sh\ncat > {seen}\n")
    hook.chmod(0o755)

    out = run_cli(tmp_path, "firstboot").stdout
    report = json.loads((tmp_path / "firstboot.json").read_text())
    assert report["cpu_variant"] and report["devices"][0]["id"] == "cpu0"
    assert json.loads(seen.read_text())["firstboot"] is True
    key_file = tmp_path / "first-admin-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = json.loads(run_cli(tmp_path, "keys", "list", "--json").stdout)
    assert [(k["name"], k["scope"]) for k in keys] == [("first-admin", "admin")]
    assert key_file.read_text().strip().startswith(keys[0]["prefix"])
    assert "best fit from the catalog" in out or "no catalog model fits" in out


def test_first_boot_creates_no_key_when_the_box_has_one(tmp_path: Path) -> None:
    run_cli(tmp_path, "keys", "create", "--name", "existing")
    run_cli(tmp_path, "firstboot")
    assert not (tmp_path / "first-admin-key").exists()
