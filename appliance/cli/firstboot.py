"""`appliance firstboot`: what ai-appliance-firstboot.service does once, before the daemon's
first start on a freshly imaged box.

1. Finds the hardware and runs the CPU variant self-test (its verdict is cached, so the daemon
   starts without redoing it).
2. Runs the `boot` hooks (driver, firmware and toolkit checks) with `{"firstboot": true}`.
3. Creates the first admin key when the box has no key, into `<state>/first-admin-key`
   (mode 0600; read it once, then delete it) rather than the journal, which others may read.
4. Picks the model that fits: the best installed one, else the catalog's best fit to import.
5. Writes `<state>/firstboot.json`, the report and the marker that keeps the unit from running
   again (its `ConditionPathExists=!`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from appliance import __version__
from appliance.cli.state import CliState, pass_state
from appliance.errors import ConfigError

KEY_FILE = "first-admin-key"
REPORT_FILE = "firstboot.json"


@click.command()
@pass_state
def firstboot(state: CliState) -> None:
    """One-time setup of a new box (run by ai-appliance-firstboot.service)."""
    from appliance.devices import DeviceManager, DriverFailed
    from appliance.firmware_hooks import HookRunner
    from appliance.placement import choose_default_model
    from appliance.placement.fit import PlanOptions, catalog_verdicts
    from appliance.records import FitKind
    from appliance.store.keys import KeyStore
    from appliance.store.models import ModelStore

    config = state.config
    report: dict[str, Any] = {"version": __version__, "started_at": time.time()}
    manager = DeviceManager.from_config(config)
    try:
        manager.refresh()
    except DriverFailed as error:
        raise ConfigError(str(error)) from None
    devices = manager.devices()
    runtime = manager.runtimes()
    report["devices"] = [d.model_dump(mode="json") for d in devices]
    report["cpu_variant"] = runtime.cpu_variant.variant if runtime.cpu_variant else None
    report["needed_runtime"] = runtime.needed_runtime
    click.echo(f"devices: {', '.join(f'{d.id} ({d.name})' for d in devices)}")
    click.echo(f"CPU variant: {report['cpu_variant'] or 'none passed the self-test'}")

    results = HookRunner.from_config(config).run(
        "boot", {"devices": report["devices"], "firstboot": True}
    )
    report["boot_hooks"] = {r.name: r.exit_code for r in results}
    failed = [r.name for r in results if not r.ok]
    click.echo(
        f"boot hooks: {len(results)} run" + (f", failed: {', '.join(failed)}" if failed else "")
    )

    config.state_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(config.database)
    if keys.count_active() == 0:
        _, key = keys.create("first-admin", scope="admin")
        key_path = _write_private(config.state_dir / KEY_FILE, key + "\n")
        report["admin_key_file"] = str(key_path)
        click.echo(f"first admin key written to {key_path} (read it once, then delete it)")
    else:
        click.echo("API keys exist already; no key created")

    store = ModelStore(config.state_dir)
    chosen = choose_default_model(store.list(), devices, config)
    report["default_model"] = chosen
    if chosen:
        click.echo(f"model: {chosen} (installed, fits)")
    else:
        # The biggest catalog build that runs entirely on one device (GPU/NPU or the CPU).
        whole = (FitKind.FITS, FitKind.CPU_ONLY)
        fits = [v for v in catalog_verdicts(devices, PlanOptions()) if v.verdict in whole]
        best = max(fits, key=lambda v: v.size_bytes) if fits else None
        report["suggested_model"] = best.model_dump(mode="json") if best else None
        if best:
            click.echo(
                f"model: none installed; the best fit from the catalog is {best.name} "
                f"{best.quantization} on {best.device_id} (appliance models catalog)"
            )
        else:
            click.echo("model: none installed, and no catalog model fits this box")
    report["finished_at"] = time.time()
    _write_private(config.state_dir / REPORT_FILE, json.dumps(report, indent=2) + "\n")


def _write_private(path: Path, text: str) -> Path:
    """Atomically, readable by the owner only."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    partial.replace(path)
    return path
