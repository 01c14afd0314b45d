"""`appliance models list|show|import|verify|export|rm|load|unload|catalog|fit|media`.

Each is one admin API call: the daemon's when it runs, else the same admin app served in this
process (`load` and `unload` then say they need the daemon). `--json` prints data for scripts.
"""

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
    admin_client,
    echo_json,
    human_bytes,
    stderr_console,
    stdout_console,
)
from appliance.cli.state import CliState, pass_state
from appliance.errors import UsageError
from appliance.records import ModelInfo

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def models() -> None:
    """Manage the models installed on this appliance."""


@models.command("list")
@json_option
@pass_state
def list_models(state: CliState, as_json: bool) -> None:
    """List installed models."""
    with admin_client(state.config) as client:
        found = client.models()
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
    with admin_client(state.config) as client:
        model = client.show_model(name)
    if as_json:
        echo_json(model)
        return
    for field, value in model.model_dump(exclude={"chat_template"}).items():
        stdout_console.print(f"{field:16} {value}")
    stdout_console.print(
        f"{'chat_template':16} {'yes' if model.chat_template else 'none (ChatML fallback)'}"
    )


@models.command("import")
@click.argument("source")
@click.option("--name", help="Name to register it under (default: from the file name).")
@click.option("--sha256", help="Expected sha256 of the file; a mismatch imports nothing.")
@json_option
@pass_state
def import_model(
    state: CliState, source: str, name: str | None, sha256: str | None, as_json: bool
) -> None:
    """Import SOURCE: a GGUF file, an ONNX model folder, a bundle (.tar) or an http(s) URL.

    Copies are checksummed and registered atomically; an interrupted URL download resumes
    when the same URL is imported again.
    """
    with _progress_bar(as_json) as (progress, task):

        def show(completed: int, total: int) -> None:
            progress.update(task, completed=completed, total=total)

        with admin_client(state.config) as client:
            result = client.import_model(
                source, name, sha256=sha256,
                on_progress=lambda p: show(p.completed_bytes, p.total_bytes),
            )  # fmt: skip
    model, created = result.model, result.created
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


@models.command("verify")
@click.argument("name", required=False)
@json_option
@pass_state
def verify(state: CliState, name: str | None, as_json: bool) -> None:
    """Re-hash one model's files (or every model's) and report damage; exit 1 if any."""
    with admin_client(state.config) as client:
        results = client.verify_models(name)
    if as_json:
        echo_json(results)
    else:
        for result in results:
            stdout_console.print(f"{'ok     ' if result.ok else 'DAMAGED'} {result.name}: "
                                 f"{result.detail}")  # fmt: skip
        if not results:
            stdout_console.print("no models installed")
    if not all(result.ok for result in results):
        raise SystemExit(1)


@models.command("export")
@click.argument("name")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Bundle file to write (a .tar another appliance can import).")  # fmt: skip
@json_option
@pass_state
def export(state: CliState, name: str, output: Path, as_json: bool) -> None:
    """Write a model as one bundle (tar + manifest with checksums) for another box."""
    with admin_client(state.config) as client:
        path = Path(client.export_model(name, output).path)
    if as_json:
        echo_json({"name": name, "path": str(path), "size_bytes": path.stat().st_size})
    else:
        stdout_console.print(f"exported {name} to {path} ({human_bytes(path.stat().st_size)})")


@models.command("template")
@click.argument("name")
@click.argument(
    "template_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--reset", is_flag=True, help="Go back to the template inside the model file.")
@click.option("--show", is_flag=True, help="Print the template in use.")
@pass_state
def template(
    state: CliState, name: str, template_file: Path | None, reset: bool, show: bool
) -> None:
    """Replace a model's chat template with TEMPLATE_FILE (Jinja2), or --reset / --show it."""
    if show:
        with admin_client(state.config) as client:
            model = client.show_model(name)
        click.echo(model.chat_template or "")
        return
    if (template_file is None) == (not reset):
        raise UsageError("give a TEMPLATE_FILE to use, or --reset to use the model file's own")
    text = None if reset else template_file.read_text()  # type: ignore[union-attr]
    with admin_client(state.config) as client:
        client.set_chat_template(name, text)
    stderr_console.print(f"{name}: {'file template restored' if reset else 'template replaced'}")


@models.command("rm")
@click.argument("name")
@pass_state
def remove(state: CliState, name: str) -> None:
    """Remove a model (unloading it first if the daemon has it loaded)."""
    with admin_client(state.config) as client:
        client.remove_model(name)
    stderr_console.print(f"removed {name}")


@models.command("load")
@click.argument("name")
@json_option
@pass_state
def load(state: CliState, name: str, as_json: bool) -> None:
    """Load a model in the running daemon (and wait until it answers)."""
    with admin_client(state.config) as client, stderr_console.status(f"loading {name}…"):
        loaded = client.load_model(name)
    if as_json:
        echo_json(loaded)
    else:
        stdout_console.print(
            f"{name} {loaded.state} on {loaded.device_id} in {loaded.load_seconds} s"
            + (f", drafting with {loaded.draft_model}" if loaded.draft_model else "")
        )


@models.command("unload")
@click.argument("name")
@json_option
@pass_state
def unload(state: CliState, name: str, as_json: bool) -> None:
    """Stop a loaded model's worker in the running daemon (it stays installed)."""
    with admin_client(state.config) as client:
        result = client.unload_model(name)
    if as_json:
        echo_json(result)
    else:
        stderr_console.print(f"unloaded {name}" if result.unloaded else f"{name} was not loaded")


from appliance.cli.models_plan import catalog, fit, media  # noqa: E402  (registers commands)

for _command in (catalog, fit, media):
    models.add_command(_command)

__all__ = ["ImportProgress", "ModelInfo", "models"]
