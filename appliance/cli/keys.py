"""`appliance keys create|list|revoke`: API keys for LAN clients."""

from __future__ import annotations

import click
from rich.table import Table

from appliance.cli.common import admin_client, echo_json, stderr_console, stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.records import KeyLimits


@click.group()
def keys() -> None:
    """Manage API keys (shown once at creation, stored hashed)."""


reasoning_option = click.option(
    "--reasoning-format",
    type=click.Choice(["deepseek", "ollama", "vllm", "none"]),
    default=None,
    help="Where answers to this key put a model's reasoning: reasoning_content (deepseek), "
    "thinking (ollama), reasoning (vllm), or left in the text (none). "
    "Default: api.reasoning_format.",
)


@keys.command("create")
@click.option("--name", help="A label such as the person or client it is for.")
@click.option(
    "--scope",
    type=click.Choice(["user", "admin"]),
    default="user",
    show_default=True,
    help="admin keys may also call /admin on the LAN listener.",
)
@reasoning_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def create(
    state: CliState, name: str | None, scope: str, reasoning_format: str | None, as_json: bool
) -> None:
    """Create a key and print it once."""
    with admin_client(state.config) as client:
        created = client.create_key(name, scope, reasoning_format)
    key, info = created.key, created.info
    if as_json:
        echo_json({"key": key, "info": info.model_dump(mode="json")})
        return
    click.echo(f"API key: {key}")
    stderr_console.print(f"created {info.scope} key {info.name!r}; it is shown only this once")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def list_keys(state: CliState, as_json: bool) -> None:
    """List keys (names and prefixes only; keys themselves are not stored)."""
    with admin_client(state.config) as client:
        found = client.keys()
    if as_json:
        echo_json(found)
        return
    table = Table("id", "name", "prefix", "scope", "revoked")
    for key in found:
        table.add_row(
            str(key.id), key.name, key.prefix + "…", key.scope, "yes" if key.revoked else ""
        )
    stdout_console.print(table)


@keys.command("revoke")
@click.argument("name_or_id")
@pass_state
def revoke(state: CliState, name_or_id: str) -> None:
    """Revoke a key by name or id; clients using it get 401 from then on."""
    with admin_client(state.config) as client:
        client.revoke_key(name_or_id)
    stderr_console.print(f"revoked {name_or_id}")


@keys.command("set")
@click.argument("name_or_id")
@reasoning_option
@pass_state
def set_key(state: CliState, name_or_id: str, reasoning_format: str | None) -> None:
    """Change a key's preferences (without --reasoning-format: back to the box's default)."""
    with admin_client(state.config) as client:
        client.update_key(name_or_id, reasoning_format)
    stderr_console.print(f"{name_or_id}: reasoning format {reasoning_format or 'default'}")


@keys.command("limit")
@click.argument("name_or_id")
@click.option("--models", help="Comma-separated models this key may use (default: all).")
@click.option("--rpm", type=int, help="Requests per minute.")
@click.option("--tokens-per-day", type=int, help="Prompt plus answer tokens per day.")
@click.option("--max-streams", type=int, help="Generations at once (n choices count n).")
@pass_state
def limit_key(
    state: CliState,
    name_or_id: str,
    models: str | None,
    rpm: int | None,
    tokens_per_day: int | None,
    max_streams: int | None,
) -> None:
    """Set a key's limits (each one left out: no limit of that kind)."""
    limits = KeyLimits(
        allowed_models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
        requests_per_minute=rpm,
        tokens_per_day=tokens_per_day,
        max_streams=max_streams,
    )
    with admin_client(state.config) as client:
        client.set_key_limits(name_or_id, limits)
    shown = ", ".join(f"{k}={v}" for k, v in limits.model_dump(exclude_none=True).items())
    stderr_console.print(f"{name_or_id}: limits {shown or 'none'}")
