"""appliance/cli/devices.py: `appliance devices` and `appliance devices --json`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
from click.testing import CliRunner

from appliance.cli.main import cli
from appliance.client import AdminClient
from appliance.drivers.cpu import CpuDriver
from helpers.daemon import Daemon, run_cli

# Wide enough that rich never wraps a CPU model name inside its column.
WIDE = {"COLUMNS": "250"}


def test_json_output_parses_and_lists_the_cpu() -> None:
    result = CliRunner().invoke(cli, ["devices", "--json"])

    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["devices"]
    [cpu] = [record for record in records if record["id"] == "cpu0"]
    assert cpu["kind"] == "cpu"
    assert cpu["usable"] is True
    assert cpu["memory_total_mib"] == psutil.virtual_memory().total // (1024 * 1024)
    assert cpu["details"]["threads"] == psutil.cpu_count()


def test_table_names_the_cpu_model_and_why_it_is_usable() -> None:
    [cpu] = CpuDriver().discover()

    result = CliRunner().invoke(cli, ["devices"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert cpu.name in result.stdout
    assert cpu.reason in result.stdout
    for column in ("id", "kind", "name", "memory (GiB)", "usable", "reason"):
        assert column in result.stdout


def test_watch_json_prints_one_line_per_refresh_with_cpu_telemetry() -> None:
    result = CliRunner().invoke(
        cli, ["devices", "--watch", "--json", "--count", "2", "--interval", "0.1"]
    )

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    sample = lines[1]["telemetry"]["cpu0"]
    assert sample["available"] is True
    assert 0 <= sample["utilization_pct"] <= 100
    assert sample["memory_total_mib"] == psutil.virtual_memory().total // (1024 * 1024)


def test_json_and_table_show_the_self_tested_cpu_variant_and_each_verdict() -> None:
    result = CliRunner().invoke(cli, ["devices", "--json"])
    runtime = json.loads(result.stdout)["runtime"]
    choice = runtime["cpu_variant"]
    assert runtime["llama_cpp_runtime"] == "cpu"
    assert choice["variant"] and choice["reason"].startswith(f"using {choice['variant']}")
    statuses = {v["name"]: v["status"] for v in choice["verdicts"]}
    assert statuses[choice["variant"]] == "chosen"

    table = CliRunner().invoke(cli, ["devices"], env=WIDE).stdout
    assert "llama.cpp runtime: cpu build" in table
    for name, status in statuses.items():
        assert any(name in line and status in line for line in table.splitlines()), name


def test_table_ends_with_the_best_placement_on_this_cpu_box() -> None:
    result = CliRunner().invoke(cli, ["devices"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "Best placement: llama.cpp on cpu0 (CPU)" in result.stdout


def test_with_a_daemon_running_the_command_reads_its_cache(daemon: Daemon) -> None:
    listed = json.loads(run_cli(daemon.home, "devices", "--json").stdout)["devices"]
    with AdminClient(daemon.admin_socket) as client:
        cached = client.devices()
        for _ in range(50):  # the daemon samples every 2 s; the first sample may be pending
            telemetry = client.device_telemetry(history=True)
            if "cpu0" in telemetry.latest:
                break
            time.sleep(0.1)
        placements = client.placements()
        runtimes = client.runtimes()

    assert listed == [device.model_dump(mode="json") for device in cached]
    assert telemetry.latest["cpu0"].available is True
    assert telemetry.history["cpu0"][-1] == telemetry.latest["cpu0"]
    assert (placements[0].engine, placements[0].device_id) == ("llama.cpp", "cpu0")
    assert "CPU" in runtimes.llama_cpp_backends


def test_an_explicit_vendor_that_is_absent_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "devices", check=False, APPLIANCE_DEVICES__DRIVER="nvidia")

    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: devices.driver is 'nvidia', but that driver found no device"
    )
