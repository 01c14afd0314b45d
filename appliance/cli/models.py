"""`appliance models list|show|import|rm|load`: through the daemon when it runs, else directly."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from appliance.api.admin.protocol import ImportProgress
from appliance.cli.common import (
    daemon_or_none,
    echo_json,
    human_bytes,
    stderr_console,
    stdout_console,
)
from appliance.cli.state import CliState, pass_state
from appliance.client import AdminClient
from appliance.errors import DaemonUnreachable
from appliance.records import ModelInfo

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _store(state: CliState):  # type: ignore[no-untyped-def]
    from appliance.store.models import ModelStore

    return ModelStore(state.config.state_dir)


@click.group()
def models() -> None:
    """Manage the models installed on this appliance."""


@models.command("list")
@json_option
@pass_state
def list_models(state: CliState, as_json: bool) -> None:
    """List installed models."""
    with daemon_or_none(state.config) as client:
        found = client.models() if client else _store(state).list()
    if as_json:
        echo_json(found)
        return
    table = Table("name", "architecture", "quantization", "size", "context")
    for model in found:
        table.add_row(
            model.name, model.architecture, model.quantization, human_bytes(model.size_bytes),
            str(model.context_length or "-"),
        )  # fmt: skip
    stdout_console.print(
        table if found else "no models installed; add one with `appliance models import FILE`"
    )


@models.command("show")
@click.argument("name")
@json_option
@pass_state
def show(state: CliState, name: str, as_json: bool) -> None:
    """Show one model's metadata."""
    with daemon_or_none(state.config) as client:
        model = client.show_model(name) if client else _store(state).get(name)
    if as_json:
        echo_json(model)
        return
    for field, value in model.model_dump(exclude={"chat_template"}).items():
        stdout_console.print(f"{field:16} {value}")
    stdout_console.print(
        f"{'chat_template':16} {'yes' if model.chat_template else 'none (ChatML fallback)'}"
    )


@models.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--name", help="Name to register it under (default: from the file name).")
@json_option
@pass_state
def import_model(state: CliState, source: Path, name: str | None, as_json: bool) -> None:
    """Import a GGUF model file into the store (copied, checksummed, registered)."""
    with _progress_bar(as_json) as (progress, task):

        def show(completed: int, total: int) -> None:
            progress.update(task, completed=completed, total=total)

        with daemon_or_none(state.config) as client:
            if client:
                result = client.import_model(
                    source, name, on_progress=lambda p: show(p.completed_bytes, p.total_bytes)
                )
                model, created = result.model, result.created
            else:
                outcome = _store(state).import_file(source, name, source=str(source), progress=show)
                model, created = outcome.model, outcome.created
    assert model is not None
    if as_json:
        echo_json({"created": created, "model": model.model_dump(mode="json")})
        return
    verb = "imported" if created else "already installed:"
    stdout_console.print(
        f"{verb} {model.name} ({model.architecture}, {model.quantization}, "
        f"{human_bytes(model.size_bytes)}, sha256 {model.sha256[:12]}…)"
    )


class _progress_bar:
    def __init__(self, hidden: bool) -> None:
        self.progress = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
            console=stderr_console, transient=True,
            disable=hidden or not stderr_console.is_terminal,
        )  # fmt: skip

    def __enter__(self) -> tuple[Progress, int]:
        self.progress.start()
        return self.progress, self.progress.add_task("importing", total=None)

    def __exit__(self, *_: object) -> None:
        self.progress.stop()


@models.command("rm")
@click.argument("name")
@pass_state
def remove(state: CliState, name: str) -> None:
    """Remove a model (unloading it first if the daemon has it loaded)."""
    with daemon_or_none(state.config) as client:
        if client:
            client.remove_model(name)
        else:
            _store(state).remove(name)
    stderr_console.print(f"removed {name}")


@models.command("load")
@click.argument("name")
@json_option
@pass_state
def load(state: CliState, name: str, as_json: bool) -> None:
    """Load a model in the running daemon (and wait until it answers)."""
    with AdminClient(state.config.admin_socket) as client:
        if not client.is_running():
            raise DaemonUnreachable(
                f"loading needs the daemon, which is not running on {state.config.admin_socket}"
            )
        with stderr_console.status(f"loading {name}…"):
            loaded = client.load_model(name)
    if as_json:
        echo_json(loaded)
    else:
        stdout_console.print(
            f"{name} {loaded.state} on {loaded.device_id} in {loaded.load_seconds} s"
        )


__all__ = ["ImportProgress", "ModelInfo", "models"]
