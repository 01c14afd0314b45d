"""`appliance doctor`: the self-test against a real daemon, without one, and its support bundle."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from helpers.daemon import Daemon, run_cli


def findings(result_stdout: str) -> list[dict[str, str]]:
    return json.loads(result_stdout)["findings"]


def test_doctor_passes_on_a_healthy_daemon_and_shows_each_area(daemon: Daemon) -> None:
    result = run_cli(daemon.home, "doctor", "--json", check=False)
    report = findings(result.stdout)
    failed = [f for f in report if f["level"] == "FAIL"]
    assert result.returncode == 0 and not failed, failed
    areas = {f["area"] for f in report}
    assert {"config", "directories", "daemon", "devices", "runtime", "hooks", "models",
            "answer", "ports"} <= areas  # fmt: skip
    [answer] = [f for f in report if f["area"] == "answer"]
    assert answer["message"].startswith("smollm2 answered")
    [variant] = [f for f in report if "CPU variant" in f["message"]]
    assert variant["level"] == "OK"


def test_doctor_without_a_daemon_fails_with_how_to_start_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "doctor", check=False)
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "no daemon answers" in result.stdout
    assert "fix: systemctl start ai-appliance" in result.stdout
    assert "no model is installed" in result.stdout


def test_a_bad_config_is_a_failed_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[engine]\nthreads = 'many'\n")
    result = run_cli(tmp_path, "doctor", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "engine.threads" in result.stdout


def test_a_world_writable_hook_is_a_warning_with_the_fix(tmp_path: Path) -> None:
    hook = tmp_path / "hooks.d" / "boot.d" / "10-open"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o777)
    report = findings(run_cli(tmp_path, "doctor", "--json", check=False).stdout)
    [line] = [f for f in report if f["area"] == "hooks" and f["level"] == "WARN"]
    assert "world-writable" in line["message"] and "10-open" in line["fix"]


def test_the_support_bundle_has_the_report_and_log_but_no_api_key(daemon: Daemon) -> None:
    # The journal carries the banner with the first key; the daemon log stands in for it here.
    with (daemon.home / "daemon.log").open("a") as log:
        log.write(f"API key: {daemon.api_key}\n")
    bundle = daemon.home / "support.tar.gz"
    run_cli(daemon.home, "doctor", "--bundle", str(bundle), check=False)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        text = "".join(
            tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in tar.getmembers()
        )
    assert "appliance-doctor/doctor.json" in names and "appliance-doctor/journal.txt" in names
    assert daemon.api_key not in text
    assert "sk-REDACTED" in text
    assert "appliance.db" not in names
