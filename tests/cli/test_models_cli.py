"""`appliance models ...`: direct on the store without a daemon, through the daemon with one."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.daemon import Daemon, run_cli


def test_import_without_a_daemon_registers_the_model_and_is_idempotent(
    tmp_path: Path, embedded_model: Path
) -> None:
    first = run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smol", "--json")
    assert json.loads(first.stdout)["created"] is True
    again = run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smol", "--json")
    assert json.loads(again.stdout)["created"] is False
    listed = json.loads(run_cli(tmp_path, "models", "list", "--json").stdout)
    assert [(m["name"], m["architecture"], m["quantization"]) for m in listed] == [
        ("smol", "llama", "Q4_1")
    ]
    run_cli(tmp_path, "models", "rm", "smol")
    assert json.loads(run_cli(tmp_path, "models", "list", "--json").stdout) == []


def test_importing_a_file_that_is_not_a_model_fails_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_text("these are my notes, not a model")
    result = run_cli(tmp_path, "models", "import", str(junk), check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not a GGUF" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(run_cli(tmp_path, "models", "list", "--json").stdout) == []


def test_showing_an_unknown_model_exits_1_naming_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "models", "show", "nope", check=False)
    assert result.returncode == 1
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_import_through_the_running_daemon_reports_the_existing_model(
    daemon: Daemon, embedded_model: Path
) -> None:
    result = run_cli(
        daemon.home, "models", "import", str(embedded_model), "--name", "smollm2", "--json"
    )
    assert json.loads(result.stdout)["created"] is False


def test_import_error_through_the_daemon_is_the_same_clear_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.gguf"
    result = run_cli(daemon.home, "models", "import", str(missing), check=False)
    assert result.returncode == 1
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_status_without_a_daemon_exits_3_and_says_how_to_start_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "status", check=False)
    assert result.returncode == 3
    assert "not running" in result.stderr and "appliance serve" in result.stderr
