"""`appliance models catalog|fit|media`: what fits this box, and what a USB stick offers.

Admin API calls, like every admin command: the daemon's device inventory when it runs, else the
same admin app in-process, discovering the devices itself.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from appliance.cli.common import admin_client, echo_json, human_bytes, stdout_console
from appliance.cli.state import CliState, pass_state
from appliance.records import FitKind, RemovableMount

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


@click.command("catalog")
@context_option
@parallel_option
@json_option
@pass_state
def catalog(state: CliState, context: int, parallel: int, as_json: bool) -> None:
    """The DeepSeek builds an appliance offers, each with its verdict for this box."""
    with admin_client(state.config) as client:
        rows = client.catalog(context, parallel)
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
    with admin_client(state.config) as client:
        plan = client.fit_model(model, context, parallel)
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


@click.command("media")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@json_option
@pass_state
def media(state: CliState, path: Path | None, as_json: bool) -> None:
    """Model files on mounted USB sticks (or under PATH) that `import` can take."""
    with admin_client(state.config) as client:
        if path is not None:
            files = client.media_files(path)
            mounts = [RemovableMount(device="-", mount_point=str(path), filesystem="-",
                                     files=files)]  # fmt: skip
        else:
            mounts = client.media()
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
