"""`appliance discover`: list the appliances announcing themselves on the LAN (mDNS)."""

from __future__ import annotations

import dataclasses

import click
from rich.table import Table

from appliance.cli.common import echo_json, stdout_console
from appliance.errors import ApplianceError


@click.command()
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(0.5, 60), default=3.0, show_default=True,
    help="Seconds to listen for answers.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def discover(timeout_s: float, as_json: bool) -> None:
    """Find AI appliances on the LAN (they announce their API over mDNS; no daemon needed here)."""
    from appliance.discovery import discover as browse

    try:
        boxes = browse(timeout_s)
    except OSError as error:  # no interface that can join the mDNS group, or port 5353 refused
        raise ApplianceError(
            f"cannot listen for mDNS announcements: {error.strerror or error}; this machine "
            "needs a network interface with multicast (and UDP port 5353 open in its firewall)"
        ) from None
    if as_json:
        echo_json([dataclasses.asdict(box) for box in boxes])
        return
    if not boxes:
        stdout_console.print(
            f"No appliance answered within {timeout_s:g} s. Boxes announce themselves when "
            "discovery.enabled is on and the LAN passes multicast (UDP 5353)."
        )
        return
    table = Table("name", "OpenAI base URL", "TLS", "API key", "version")
    for box in boxes:
        table.add_row(
            box.name, box.url, "yes" if box.tls else "no",
            "required" if box.api_key_required else "not required", box.version,
        )  # fmt: skip
    stdout_console.print(table)
    for box in boxes:
        if box.fingerprint:
            stdout_console.print(
                f"{box.name}: certificate SHA-256 {box.fingerprint}",
                soft_wrap=True, emoji=False, markup=False, highlight=False,
            )  # fmt: skip
