"""`appliance tui`: open the terminal management UI (a client of the admin socket)."""

from __future__ import annotations

import click

from appliance.cli.state import CliState, pass_state


@click.command()
@click.option("--refresh", default=2.0, show_default=True, help="Seconds between status refreshes.")
@pass_state
def tui(state: CliState, refresh: float) -> None:
    """Open the management UI on this terminal."""
    from appliance.ui.app import ApplianceApp

    ApplianceApp(state.config.admin_socket, refresh_s=refresh).run()
