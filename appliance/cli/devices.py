"""`appliance devices [--json] [--watch]`: the compute devices, why each is usable, live load.

Admin API calls: when a daemon runs, its device cache answers (one poller owns the hardware,
STYLE.md habit 7); otherwise the admin app served in-process runs discovery on the first
question and samples telemetry on each. Must not import the daemon, the devices or the UI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import click
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from appliance.cli.common import admin_client, stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.client import AdminClient
from appliance.records import Accelerator, Placement, RuntimeReport, Telemetry


class _Source:
    """The answers, from the admin API."""

    def __init__(self, client: AdminClient) -> None:
        self.client = client

    def devices(self) -> list[Accelerator]:
        return self.client.devices()

    def telemetry(self) -> dict[str, Telemetry]:
        return self.client.device_telemetry().latest

    def placements(self) -> list[Placement]:
        return self.client.placements()

    def runtime(self) -> RuntimeReport:
        """The llama.cpp build and its self-tested CPU variant."""
        return self.client.runtimes()


@click.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON for scripts (with --watch: one line per refresh).",
)
@click.option(
    "--watch", is_flag=True, help="Keep refreshing with live load, memory, heat and power."
)
@click.option(
    "--interval",
    type=float,
    default=None,
    help="Seconds between refreshes with --watch.  [default: devices.telemetry_interval_s]",
)
@click.option(
    "--count",
    type=int,
    default=0,
    show_default=True,
    help="With --watch: stop after this many refreshes (0: until Ctrl-C).",
)
@pass_state
def devices(
    state: CliState, as_json: bool, watch: bool, interval: float | None, count: int
) -> None:
    """List compute devices (CPU, NVIDIA GPUs, Ascend NPUs) and whether a model can use them."""
    config = state.config
    with admin_client(config) as client:
        source = _Source(client)
        if watch:
            _watch(source, as_json, interval or config.devices.telemetry_interval_s, count)
        elif as_json:
            report = {
                "devices": [d.model_dump(mode="json") for d in source.devices()],
                "runtime": source.runtime().model_dump(mode="json"),
            }
            click.echo(json.dumps(report, indent=2))
        else:
            _report(source)


def _report(source: _Source) -> None:
    found = source.devices()
    stdout_console.print(device_table(found))
    runtime = source.runtime()
    stdout_console.print(runtime_table(runtime))
    placements = source.placements()
    if placements:
        best = placements[0]
        stdout_console.print(
            f"Best placement: {best.engine} on {best.device_id} ({best.backend}): "
            f"{escape(best.reason)}"
        )
    unusable = [device for device in found if not device.usable]
    if unusable:
        # Diagnostics go to stderr so that stdout stays the report alone.
        click.echo(f"{len(unusable)} device(s) not usable; see the reason column.", err=True)


def runtime_table(report: RuntimeReport) -> Table:
    """The llama.cpp build and every CPU variant's self-test verdict."""
    choice = report.cpu_variant
    build = report.llama_cpp_runtime or "none"
    title = f"llama.cpp runtime: {build} build" + (f" in {report.llama_cpp_dir}" if build else "")
    table = Table(title=escape(title), caption=escape(choice.reason) if choice else None)
    for column in ("CPU variant", "CPUID score", "self-test", "gen tok/s", "prompt tok/s"):
        table.add_column(column, no_wrap=True, justify="left" if "variant" in column else "right")
    table.add_column("why", overflow="fold")
    colours = {"chosen": "bold green", "passed": "green", "rejected": "red", "not-tried": "dim"}
    for verdict in choice.verdicts if choice else []:
        speed = [
            "-" if value is None else f"{value:,.0f}"
            for value in (verdict.decode_tok_s, verdict.prompt_tok_s)
        ]
        status = f"[{colours[verdict.status.value]}]{verdict.status.value}[/]"
        why = verdict.reason.removeprefix(f"{verdict.name}: ")
        table.add_row(escape(verdict.name), str(verdict.score), status, *speed, escape(why))
    for note in report.notes + ([report.needed_runtime] if report.needed_runtime else []):
        table.add_row("", "", "[yellow]note[/]", "", "", escape(note))
    return table


def _watch(source: _Source, as_json: bool, interval: float, count: int) -> None:
    def frames() -> Iterator[tuple[list[Accelerator], dict[str, Telemetry]]]:
        shown = 0
        while not count or shown < count:
            if shown:
                time.sleep(interval)
            shown += 1
            yield source.devices(), source.telemetry()

    if as_json:  # JSON lines: one object per refresh, for scripts following along
        for found, samples in frames():
            line = {
                "devices": [d.model_dump(mode="json") for d in found],
                "telemetry": {k: v.model_dump(mode="json") for k, v in samples.items()},
            }
            click.echo(json.dumps(line))
        return
    with Live(console=stdout_console, auto_refresh=False) as live:
        for found, samples in frames():
            live.update(Group(device_table(found, samples)), refresh=True)


def device_table(found: list[Accelerator], samples: dict[str, Telemetry] | None = None) -> Table:
    table = Table(title="Compute devices")
    table.add_column("id", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("name")
    table.add_column("memory (GiB)", justify="right", no_wrap=True)
    table.add_column("usable", no_wrap=True)
    if samples is not None:
        for column in ("load %", "used (GiB)", "temp °C", "power W"):
            table.add_column(column, justify="right", no_wrap=True)
    if samples is None:  # reasons do not change between refreshes; the live view needs room
        table.add_column("reason", overflow="fold")
    for device in found:
        memory = f"{device.memory_total_mib / 1024:.1f}" if device.memory_total_mib else "?"
        usable = "[green]yes[/]" if device.usable else "[red]no[/]"
        # Names and reasons are data, not markup: "NVIDIA GPU [10de:2330]" must print as is.
        row = [escape(device.id), device.kind.value, escape(device.name), memory, usable]
        if samples is None:
            row.append(escape(device.reason))
        else:
            row.extend(_live_cells(samples.get(device.id)))
        table.add_row(*row)
    return table


def _live_cells(sample: Telemetry | None) -> list[str]:
    if sample is None:
        return ["-"] * 4
    if not sample.available:
        return ["[yellow]n/a[/]"] * 4

    def show(value: float | None, fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    used = None if sample.memory_used_mib is None else sample.memory_used_mib / 1024
    return [
        show(sample.utilization_pct, "{:.0f}"),
        show(used, "{:.1f}"),
        show(sample.temperature_c, "{:.0f}"),
        show(sample.power_w, "{:.0f}"),
    ]
