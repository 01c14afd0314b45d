"""`appliance hooks list | run EVENT [--dry-run]` on a temporary hooks folder."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.daemon import run_cli


def hook(home: Path, event: str, name: str, body: str, mode: int = 0o755) -> Path:
    path = home / "hooks.d" / f"{event}.d" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(mode)
    return path


def test_list_shows_every_hook_with_whether_it_runs(tmp_path: Path) -> None:
    hook(tmp_path, "boot", "10-ok", "true")
    hook(tmp_path, "boot", "20-off", "true", mode=0o644)
    rows = json.loads(run_cli(tmp_path, "hooks", "list", "--json").stdout)
    assert [(r["event"], r["name"], r["runs"]) for r in rows] == [
        ("boot", "10-ok", True), ("boot", "20-off", False),
    ]  # fmt: skip
    assert "chmod +x" in rows[1]["problem"]


def test_dry_run_lists_in_order_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hook(tmp_path, "update", "20-second", f"touch {marker}")
    hook(tmp_path, "update", "10-first", f"touch {marker}")
    out = run_cli(tmp_path, "hooks", "run", "update", "--dry-run").stdout
    assert out.index("10-first") < out.index("20-second")
    assert not marker.exists()


def test_run_feeds_the_payload_and_exits_1_when_a_hook_fails(tmp_path: Path) -> None:
    seen = tmp_path / "payload"
    hook(tmp_path, "update", "10-record", f"cat > {seen}")
    hook(tmp_path, "update", "20-fail", "echo 'driver too old' >&2; exit 3")
    result = run_cli(tmp_path, "hooks", "run", "update", "--payload", '{"from": "0.1.0"}',
                     check=False)  # fmt: skip
    assert result.returncode == 1
    assert json.loads(seen.read_text()) == {"from": "0.1.0"}
    assert "FAILED update.d/20-fail (exit 3" in result.stdout
    assert "driver too old" in result.stdout


def test_unknown_event_and_bad_payload_are_usage_errors(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "hooks", "run", "reboot", check=False).returncode == 2
    bad = run_cli(tmp_path, "hooks", "run", "boot", "--payload", "[1]", check=False)
    assert bad.returncode == 2 and "JSON object" in bad.stderr
