"""`appliance hooks list | run EVENT [--dry-run]`: what the lifecycle hooks are, and run them.

Runs the hooks with the same runner the daemon uses (`appliance.firmware_hooks`), but as the
user who typed the command, outside the service's sandbox: a hook that passes here may still
lack a permission under the service (the doctor and the journal show those).
"""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.common import stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.errors import UsageError
from appliance.firmware_hooks import HookEvent, discover_hooks, list_hooks, run_hooks


@click.group()
def hooks() -> None:
    """List the lifecycle hooks in hooks.d, or run one event's hooks now."""


@hooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def list_command(state: CliState, as_json: bool) -> None:
    """Every hook per event, in run order, and whether it runs (and why not)."""
    entries = list_hooks(state.config.hooks_dir)
    if as_json:
        rows = [
            {"event": e.event, "name": e.name, "path": str(e.path), "runs": e.runs,
             "problem": e.problem, "target": str(e.target) if e.target else None}
            for e in entries
        ]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=escape(f"Hooks in {state.config.hooks_dir}"))
    for column in ("event", "hook", "runs", "target / problem"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        runs = "[green]yes[/]" if entry.runs else "[red]no[/]"
        note = entry.problem or (str(entry.target) if entry.target else "")
        table.add_row(entry.event, escape(entry.name), runs, escape(note))
    stdout_console.print(table)
    if not entries:
        click.echo("no hooks installed", err=True)


@hooks.command("run")
@click.argument("event", type=click.Choice([str(e) for e in HookEvent]))
@click.option("--dry-run", is_flag=True, help="Only list the hooks that would run, in order.")
@click.option("--payload", default="{}", help="JSON object written to each hook's stdin.")
@pass_state
def run_command(state: CliState, event: str, dry_run: bool, payload: str) -> None:
    """Run EVENT's hooks one after another, as the daemon would; exits 1 if one fails."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as error:
        raise UsageError(f"--payload is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError('--payload must be a JSON object such as \'{"from": "0.1.0"}\'')
    config = state.config
    if dry_run:
        found = discover_hooks(config.hooks_dir, event)
        for path in found:
            click.echo(f"would run {event}.d/{path.name} ({path.resolve()})")
        if not found:
            click.echo(f"no {event} hooks in {config.hooks_dir}")
        return
    results = run_hooks(event, data, hooks_dir=config.hooks_dir, timeout_s=config.hooks.timeout_s)
    for result in results:
        word = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
        if result.timed_out:
            word = "[red]TIMED OUT[/]"
        stdout_console.print(
            f"{word} {event}.d/{escape(result.name)} (exit {result.exit_code}, "
            f"{result.duration_s:.2f} s)"
        )
        for line in (result.stdout_tail + result.stderr_tail).strip().splitlines()[-20:]:
            stdout_console.print(f"    {escape(line)}")
    if not results:
        click.echo(f"no {event} hooks in {config.hooks_dir}")
    raise SystemExit(0 if all(result.ok for result in results) else 1)
