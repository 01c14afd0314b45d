"""`appliance devices`: the accelerators this box found, as a table for people or JSON for scripts.

Must not import the daemon, the API or the UI. For now it runs the drivers in-process; once the
daemon's admin API serves the device cache, this command asks the daemon instead (one poller
owns the hardware, STYLE.md habit 7) and this import of `appliance.drivers` goes away.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from appliance.records import Accelerator

if TYPE_CHECKING:  # a runtime import would be circular: main imports this module
    from appliance.cli.main import CliState


@click.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list of device records on stdout, for scripts.",
)
@click.pass_obj
def devices(state: CliState | None, as_json: bool) -> None:
    """List compute devices (CPU, NVIDIA GPUs, Ascend NPUs) and whether a model can use them."""
    # `state` carries the config; it is unused until this command talks to the daemon.
    from appliance.drivers import discover_all  # imported here: `--help` must not scan hardware

    found = discover_all()
    if as_json:
        click.echo(json.dumps([device.model_dump(mode="json") for device in found], indent=2))
        return
    Console().print(device_table(found))
    unusable = [device for device in found if not device.usable]
    if unusable:
        # Diagnostics go to stderr so that stdout stays the table alone.
        click.echo(f"{len(unusable)} device(s) not usable; see the reason column.", err=True)


def device_table(found: list[Accelerator]) -> Table:
    table = Table(title="Compute devices")
    table.add_column("id", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("name")
    table.add_column("memory (GiB)", justify="right", no_wrap=True)
    table.add_column("usable", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for device in found:
        memory = f"{device.memory_total_mib / 1024:.1f}" if device.memory_total_mib else "?"
        usable = "[green]yes[/]" if device.usable else "[red]no[/]"
        # Names and reasons are data, not markup: "NVIDIA GPU [10de:2330]" must print as is.
        name, reason = escape(device.name), escape(device.reason)
        table.add_row(escape(device.id), device.kind.value, name, memory, usable, reason)
    return table
