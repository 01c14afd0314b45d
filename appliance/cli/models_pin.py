"""`appliance models pin|unpin NAME`: keep a loaded model in memory, or let it go again."""

from __future__ import annotations

import click

from appliance.cli.state import CliState, pass_state


def _pin(state: CliState, name: str, pinned: bool) -> None:
    from appliance.cli.common import admin_client
    from appliance.client import calls

    with admin_client(state.config) as client:
        record = client.run(calls.pin_model(name, pinned))
    if pinned:
        click.echo(f"{record.name} is pinned: it stays loaded until unpinned or unloaded")
    else:
        click.echo(f"{record.name} is unpinned: idle for engine.keep_alive_s, it is unloaded")


@click.command("pin")
@click.argument("name")
@pass_state
def pin(state: CliState, name: str) -> None:
    """Keep a loaded model in memory (not unloaded when idle nor for another model)."""
    _pin(state, name, True)


@click.command("unpin")
@click.argument("name")
@pass_state
def unpin(state: CliState, name: str) -> None:
    """Let a pinned model be unloaded again when idle or when room is needed."""
    _pin(state, name, False)
