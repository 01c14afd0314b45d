"""`appliance upstream add|list|rm`: model names forwarded to OpenAI-compatible servers.

Runs through the daemon's admin API only (the daemon owns the upstream list and checks the
servers); upstream API keys are sent to it once and never printed back.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.common import admin_client, echo_json, stderr_console, stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.errors import UsageError
from appliance.records import UpstreamState


@click.group()
def upstream() -> None:
    """Forward model names to vLLM, MindIE, llama-server or another appliance."""


def _describe(state: UpstreamState) -> str:
    if state.health == "up":
        return f"up ({state.latency_ms:.0f} ms)" if state.latency_ms is not None else "up"
    if state.health == "down":
        return f"down: {state.error}"
    return "not checked yet"


@upstream.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--api-key", default="", help="Key the upstream expects (sent as Bearer).")
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the key from a file instead (keeps it out of the shell history and `ps`).",
)
@click.option(
    "--model", "upstream_model", default="", help="The upstream's model id (default: NAME)."
)
@click.option(
    "--max-streams",
    type=click.IntRange(1, 4096),
    default=16,
    show_default=True,
    help="Requests sent to this server at once; more wait in the appliance's queue.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CA bundle (PEM) to trust for an https upstream.",
)
@click.option("--insecure", is_flag=True, help="Do not check an https upstream's certificate.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def add(
    state: CliState,
    name: str,
    url: str,
    api_key: str,
    api_key_file: Path | None,
    upstream_model: str,
    max_streams: int,
    ca_file: str | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Serve NAME by forwarding to the OpenAI-compatible server at URL.

    URL is the server's OpenAI base URL (e.g. http://10.0.0.5:8000/v1; a bare host:port gets
    /v1). Adding another URL under the same NAME adds a replica: requests go to the least busy
    one and move to another when one cannot be reached.
    """
    if api_key and api_key_file:
        raise UsageError("give --api-key or --api-key-file, not both")
    if api_key_file is not None:
        api_key = api_key_file.read_text(encoding="utf-8").strip()
    with admin_client(state.config) as client:
        added = client.add_upstream(
            name, url, api_key=api_key, model=upstream_model, verify_tls=not insecure,
            ca_file=str(Path(ca_file).resolve()) if ca_file else "", max_streams=max_streams,
        )  # fmt: skip
    if as_json:
        echo_json(added)
        return
    stderr_console.print(
        f"upstream {escape(added.name)!r} → {escape(added.url)}"
        + (f" (model {escape(added.model)})" if added.model else "")
        + f": {escape(_describe(added))}"
    )


@upstream.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def list_upstreams(state: CliState, as_json: bool) -> None:
    """List upstream servers with their health, latency and requests in flight."""
    with admin_client(state.config) as client:
        found = client.upstreams()
    if as_json:
        echo_json(found)
        return
    print_table(found)


def print_table(found: list[UpstreamState]) -> None:
    if not found:
        stdout_console.print("no upstreams (add one with `appliance upstream add NAME URL`)")
        return
    table = Table("name", "url", "upstream model", "key", "health", "latency", "in flight",
                  "requests", "failures")  # fmt: skip
    for item in found:
        health = {"up": "[green]up[/]", "down": "[red]down[/]"}.get(item.health, item.health)
        table.add_row(
            item.name, item.url, item.model or item.name, "yes" if item.has_api_key else "-",
            health, f"{item.latency_ms:.0f} ms" if item.latency_ms is not None else "-",
            f"{item.in_flight}/{item.max_streams}", str(item.requests), str(item.failures),
        )  # fmt: skip
    stdout_console.print(table)
    for item in found:
        if item.health == "down" and item.error:
            stdout_console.print(f"{escape(item.name)} at {escape(item.url)}: {escape(item.error)}")


@upstream.command("rm")
@click.argument("name")
@click.option("--url", default=None, help="Remove only this replica (default: all of NAME).")
@pass_state
def remove(state: CliState, name: str, url: str | None) -> None:
    """Stop serving NAME (or one of its replicas); requests in flight to it end with an error."""
    with admin_client(state.config) as client:
        gone = client.remove_upstream(name, url)
    for item in gone:
        stderr_console.print(f"removed upstream {escape(item.name)!r} at {escape(item.url)}")
