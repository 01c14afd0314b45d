"""`appliance serve`: run the daemon in the foreground (systemd runs exactly this)."""

from __future__ import annotations

import click

from appliance.cli.state import CliState, pass_state


@click.command()
@pass_state
def serve(state: CliState) -> None:
    """Serve the LAN API and the admin socket; load the default model.

    Listens on api.listen [env: APPLIANCE_LISTEN; default 0.0.0.0:8080]. Prints the LAN URL
    and, on the first start of a fresh home, the API key.
    """
    from appliance.daemon import serve as run_daemon  # heavy imports only for this command

    run_daemon(state.config)
