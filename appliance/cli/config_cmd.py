"""`appliance config check|show|schema`: validate and explain the configuration."""

from __future__ import annotations

import json

import click

from appliance.cli.state import CliState, pass_state
from appliance.config import Config, default_config_path


@click.group()
def config() -> None:
    """Check, show and document the configuration."""


@config.command("check")
@pass_state
def check(state: CliState) -> None:
    """Validate the config file and environment; print the paths in effect."""
    cfg = state.config
    path = state.config_path or default_config_path()
    click.echo(f"config file:   {path}{'' if path.exists() else ' (absent: defaults apply)'}")
    click.echo(f"state dir:     {cfg.state_dir}")
    click.echo(f"admin socket:  {cfg.admin_socket}")
    click.echo(f"hooks dir:     {cfg.hooks_dir}")
    click.echo(f"LAN listener:  {cfg.api.listen} (API key required: {cfg.api.require_api_key})")
    click.echo("ok")


@config.command("show")
@pass_state
def show(state: CliState) -> None:
    """Print the effective configuration as JSON."""
    click.echo(json.dumps(state.config.model_dump(mode="json"), indent=2))


@config.command("schema")
def schema() -> None:
    """Print every setting with its default and meaning (JSON Schema)."""
    click.echo(json.dumps(Config.model_json_schema(), indent=2))
