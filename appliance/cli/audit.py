"""`appliance audit`: who used the LAN API, with what model, how many tokens, how it ended."""

from __future__ import annotations

import re
import time
from datetime import datetime

import click
from rich.table import Table

from appliance.api.admin.protocol import AuditQuery
from appliance.cli.common import admin_client, echo_json, stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None) -> float | None:
    """`30m`, `12h`, `7d` ago, or an ISO date/time, as epoch seconds."""
    if not value:
        return None
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if match:
        return time.time() - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {value!r}: give an age such as 30m, 12h or 7d, or a date such as "
            "2026-01-31 or 2026-01-31T09:00"
        ) from None


@click.command()
@click.option("--since", help="Only entries newer than an age (30m, 12h, 7d) or an ISO date.")
@click.option("--key", "key_name", help="Only requests made with this API key (its name).")
@click.option("--model", help="Only requests for this model.")
@click.option("--limit", default=100, show_default=True, help="Most entries to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def audit(
    state: CliState,
    since: str | None,
    key_name: str | None,
    model: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit log of LAN API requests, newest first."""
    query = AuditQuery(since=parse_since(since), key=key_name, model=model, limit=limit)
    with admin_client(state.config) as client:
        entries = client.audit(query)
    if as_json:
        echo_json(entries)
        return
    table = Table("time", "key", "route", "model", "in", "out", "status", "seconds")
    for entry in entries:
        when = datetime.fromtimestamp(entry.ts).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            when, entry.key_name or "-", entry.route, entry.model or "-", str(entry.tokens_in),
            str(entry.tokens_out), str(entry.status), f"{entry.duration_s:.2f}",
        )  # fmt: skip
    stdout_console.print(table)
