"""`appliance models catalog|fit|media`: what fits this box, and what a USB stick offers.

Through the daemon when it runs (its device inventory), else directly: devices from
`appliance.drivers.discover_all()`, the catalog and planner in-process.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from appliance.cli.common import daemon_or_none, echo_json, human_bytes, stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.records import FitKind

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
context_option = click.option(
    "--context", default=4096, show_default=True, help="Context per slot, in tokens."
)
parallel_option = click.option(
    "--parallel", default=1, show_default=True, help="Parallel slots (requests served at once)."
)
_STYLE = {
    FitKind.FITS: "green", FitKind.PARTIAL: "yellow", FitKind.CPU_ONLY: "cyan",
    FitKind.NO_FIT: "red",
}  # fmt: skip


def _devices():  # type: ignore[no-untyped-def]
    from appliance.drivers import discover_all

    return discover_all()


@click.command("catalog")
@context_option
@parallel_option
@json_option
@pass_state
def catalog(state: CliState, context: int, parallel: int, as_json: bool) -> None:
    """The DeepSeek builds an appliance offers, each with its verdict for this box."""
    with daemon_or_none(state.config) as client:
        if client:
            rows = client.catalog(context, parallel)
        else:
            from appliance.placement.fit import PlanOptions, catalog_verdicts

            rows = catalog_verdicts(_devices(), PlanOptions(context, parallel))
    if as_json:
        echo_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "quant", "size", "verdict", "layers", "ctx"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        size = human_bytes(row.size_bytes) + (f" x{row.parts}" if row.parts > 1 else "")
        verdict = f"[{_STYLE[row.verdict]}]{row.verdict.value}[/] {row.device_id}"
        table.add_row(
            row.id.removeprefix("deepseek-"), row.quantization, size, verdict,
            str(row.gpu_layers or "-"), f"{row.max_context // 1024}k" if row.max_context else "-",
        )  # fmt: skip
    stdout_console.print(table)
    stdout_console.print(
        f"verdicts for {context:,} tokens x {parallel} slot(s); the ids lack their "
        "`deepseek-` prefix; `appliance models fit deepseek-ID:QUANT` shows the arithmetic"
    )


@click.command("fit")
@click.argument("model")
@context_option
@parallel_option
@json_option
@pass_state
def fit(state: CliState, model: str, context: int, parallel: int, as_json: bool) -> None:
    """Will MODEL (an installed name, or a catalog ID:QUANT) fit, and how: per device, in words."""
    from appliance.placement.fit import PlanOptions, plan_catalog, plan_model

    opts = PlanOptions(context, parallel)
    entry_id, _, quant = model.partition(":")
    with daemon_or_none(state.config) as client:
        if quant and _in_catalog(entry_id):
            from appliance.store.catalog import load_catalog

            entry = load_catalog().get(entry_id)
            devices = client.devices() if client else _devices()
            plan = plan_catalog(entry, entry.file_for(quant), devices, opts)
        elif client:
            plan = client.fit_model(model, context, parallel)
        else:
            from appliance.store.models import ModelStore

            store = ModelStore(state.config.state_dir)
            try:
                plan = plan_model(store.get(model), _devices(), opts)
            finally:
                store.close()
    if as_json:
        echo_json(plan)
        return
    stdout_console.print(f"{plan.model} ({plan.quantization})")
    for device in plan.devices:
        style = _STYLE[device.verdict]
        stdout_console.print(f"\n[{style}]{device.device_id}: {device.verdict.value}[/] "
                             f"({device.device})")  # fmt: skip
        for line in device.arithmetic:
            stdout_console.print(f"  - {line}")


def _in_catalog(entry_id: str) -> bool:
    from appliance.store.catalog import load_catalog

    return any(entry.id == entry_id for entry in load_catalog().models)


@click.command("media")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@json_option
@pass_state
def media(state: CliState, path: Path | None, as_json: bool) -> None:
    """Model files on mounted USB sticks (or under PATH) that `import` can take."""
    from appliance.records import RemovableMount

    with daemon_or_none(state.config) as client:
        if path is not None:
            files = client.media_files(path) if client else _files(path)
            mounts = [RemovableMount(device="-", mount_point=str(path), filesystem="-",
                                     files=files)]  # fmt: skip
        elif client:
            mounts = client.media()
        else:
            from appliance.store.media import scan_mounts

            mounts = scan_mounts()
    if as_json:
        echo_json(mounts)
        return
    if not mounts:
        stdout_console.print("no removable media mounted")
    for mount in mounts:
        stdout_console.print(f"{mount.mount_point} ({mount.device}, {mount.filesystem})")
        for item in mount.files or []:
            extra = f"  {item.detail}" if item.detail else ""
            stdout_console.print(f"  {item.kind:6} {human_bytes(item.size_bytes):>10}  "
                                 f"{item.path}{extra}")  # fmt: skip
        if not mount.files:
            stdout_console.print("  nothing importable")


def _files(path: Path):  # type: ignore[no-untyped-def]
    from appliance.store.media import importable_files

    return importable_files(path)
