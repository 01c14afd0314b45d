"""`appliance status`: what the running daemon is doing."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.common import admin_client, echo_json, stdout_console
from appliance.cli.state import CliState, pass_state


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def status(state: CliState, as_json: bool) -> None:
    """Show the daemon's URL, devices and loaded models (needs a running daemon)."""
    with admin_client(state.config) as client:
        info = client.status()
    if as_json:
        echo_json(info)
        return
    stdout_console.print(f"[bold]AI appliance {info.version}[/] up {info.uptime_s:.0f} s")
    stdout_console.print(f"LAN API: {info.api_url}  (key required: {info.api_key_required})")
    if info.tls_fingerprint:
        # Never wrapped: people compare it character by character or copy it whole.
        # No emoji codes either: rich would turn a ":AB:" inside the fingerprint into 🆎.
        stdout_console.print(
            f"TLS: {info.tls_mode}, SHA-256 fingerprint {info.tls_fingerprint}",
            soft_wrap=True, emoji=False, markup=False, highlight=False,
        )  # fmt: skip
    else:
        stdout_console.print("TLS: off (tls.mode)")
    stdout_console.print(f"mDNS: {escape(info.discovery)}", soft_wrap=True)
    stdout_console.print(f"Default model: {info.default_model or '-'}")
    runtime = info.runtime
    if runtime is None:
        stdout_console.print("llama.cpp runtime: being probed (CPU variant self-test)")
    else:
        choice = runtime.cpu_variant
        variant = choice.variant if choice and choice.variant else "none"
        stdout_console.print(
            f"llama.cpp runtime: {runtime.llama_cpp_runtime or 'none'} build, CPU variant "
            f"{variant}" + (f" ({escape(choice.reason)})" if choice else "")
        )
        for note in runtime.notes + ([runtime.needed_runtime] if runtime.needed_runtime else []):
            stdout_console.print(f"[yellow]note:[/] {escape(note)}")
    table = Table("model", "state", "engine", "device", "pid", "context", "note")
    for model in info.models_loaded:
        table.add_row(
            model.name, model.state, model.engine, model.device_id, str(model.pid or "-"),
            str(model.context_length or "-"), model.error,
        )  # fmt: skip
    stdout_console.print(table)
    for model in info.models_loaded:
        if model.placement:
            stdout_console.print(
                f"{model.name} on {model.device_id}/{model.backend}: {model.placement}"
            )
    for model in info.models_loaded:
        if model.draft_model:
            stdout_console.print(f"{model.name} drafts with {model.draft_model} (speculative)")
    if info.upstreams:
        from appliance.cli.upstream import print_table

        stdout_console.print("Upstreams:")
        print_table(info.upstreams)
