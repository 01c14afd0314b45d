"""`appliance doctor [--json] [--bundle FILE]`: the self-test, and a support tarball.

The checks live in `appliance.doctor`; this module prints them and writes the bundle. The bundle
never carries secrets: no database, no key files, and every API key that appears in a log or a
file (the daemon prints the first one at its first start) is replaced by `sk-REDACTED`.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from appliance.cli.common import stdout_console
from appliance.cli.state import CliState, pass_state

KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_-]{16,}")
SECRET_SETTING = re.compile(r"^(\s*#?\s*\w*(key|secret|token|password)\w*\s*=\s*).*$", re.I | re.M)
COLOURS = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


def redact(text: str) -> str:
    """API keys and secret-looking settings out; everything else as it was."""
    text = KEY_PATTERN.sub("sk-REDACTED", text)
    return SECRET_SETTING.sub(lambda m: m.group(1) + '"REDACTED"', text)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a support tarball (.tar.gz) without secrets: findings, versions, config, "
    "the service's journal.",
)
@pass_state
def doctor(state: CliState, as_json: bool, bundle: Path | None) -> None:
    """Check the whole box: config, folders, daemon, devices and runtimes, hooks, models, a
    golden prompt and the ports. Every line is OK, WARN or FAIL with the fix; exits 1 on FAIL."""
    from appliance.doctor import environment_summary, exit_code, run_checks

    findings, facts = run_checks(state.config_path)
    report = {"findings": [f.as_dict() for f in findings], "facts": facts}
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for finding in findings:
            level = finding.level.value
            stdout_console.print(
                f"[{COLOURS[level]}]{level:<4}[/] {finding.area:<11} {escape(finding.message)}"
            )
            if finding.fix:
                stdout_console.print(f"{'':16} fix: {escape(finding.fix)}")
        counts = {lvl: sum(f.level.value == lvl for f in findings) for lvl in COLOURS}
        stdout_console.print(", ".join(f"{n} {lvl}" for lvl, n in counts.items()))
    if bundle is not None:
        write_bundle(bundle, report, environment_summary(), state)
        click.echo(f"support bundle written to {bundle} (no keys or secrets)", err=True)
    raise SystemExit(exit_code(findings))


def write_bundle(path: Path, report: dict[str, Any], env: dict[str, str], state: CliState) -> None:
    from appliance.config import Config, default_config_path

    files: dict[str, str] = {
        "doctor.json": json.dumps(report, indent=2, ensure_ascii=False),
        "environment.json": json.dumps(env, indent=2),
    }
    config_path = state.config_path or default_config_path()
    try:
        files["config.toml"] = config_path.read_text(errors="replace")
    except OSError as error:
        files["config.toml"] = f"# not readable: {error}\n"
    try:
        config: Config | None = state.config
    except Exception:  # a broken config is already a finding; the bundle still gets written
        config = None
    files["journal.txt"] = _journal(config)
    if config is not None:
        files["hooks.txt"] = "\n".join(
            str(p.relative_to(config.hooks_dir)) for p in sorted(config.hooks_dir.rglob("*"))
        ) if config.hooks_dir.is_dir() else "(no hooks folder)\n"  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    stamp = time.time()
    with tarfile.open(partial, "w:gz") as tar:
        for name, text in files.items():
            data = redact(text).encode()
            info = tarfile.TarInfo(f"appliance-doctor/{name}")
            info.size, info.mtime, info.mode = len(data), int(stamp), 0o600
            tar.addfile(info, io.BytesIO(data))
    partial.chmod(0o600)
    partial.replace(path)  # atomic: a half-written bundle never has the final name


def _journal(config: Any) -> str:
    """The service's journal when systemd runs it, else the log of an APPLIANCE_HOME daemon."""
    if shutil.which("journalctl"):
        result = subprocess.run(
            ["journalctl", "-u", "ai-appliance", "-u", "ai-appliance-firstboot", "-n", "3000",
             "--no-pager", "-o", "short-iso"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode == 0 and result.stdout.strip() and "No entries" not in result.stdout:
            return result.stdout
    if config is not None and config.home is not None:
        log = config.home / "daemon.log"
        if log.exists():
            return log.read_text(errors="replace")[-2_000_000:]
    return "(no journal or daemon log found)\n"
