"""appliance/cli/devices.py: `appliance devices` and `appliance devices --json`."""

from __future__ import annotations

import json

import psutil
from click.testing import CliRunner

from appliance.cli.main import cli
from appliance.drivers.cpu import CpuDriver

# Wide enough that rich never wraps a CPU model name inside its column.
WIDE = {"COLUMNS": "250"}


def test_json_output_parses_and_lists_the_cpu() -> None:
    result = CliRunner().invoke(cli, ["devices", "--json"])

    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
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
