"""Entry point of the `appliance` console script: the click group and error-to-exit mapping."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance import __version__
from appliance.cli.state import CliState
from appliance.errors import ApplianceError, ConfigError, DaemonUnreachable, UsageError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def exit_code_for(error: ApplianceError) -> int:
    if isinstance(error, ConfigError | UsageError):
        return EXIT_USAGE
    if isinstance(error, DaemonUnreachable):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class ApplianceGroup(click.Group):
    """A click group that turns every `ApplianceError` into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ApplianceError as error:
            click.echo(f"error: {error.message}", err=True)
            ctx.exit(exit_code_for(error))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=ApplianceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file. [env: APPLIANCE_CONFIG; default: /etc/ai-appliance/config.toml]",
)
@click.version_option(__version__, prog_name="appliance")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Run and administer the AI appliance: a DeepSeek chat server for the office LAN.

    Every command honours APPLIANCE_HOME (one directory instead of the system paths),
    APPLIANCE_CONFIG and APPLIANCE_LISTEN.
    """
    ctx.obj = CliState(config_path)


def _register() -> None:
    # Imported here so that a broken optional piece cannot stop `appliance --help`.
    from appliance.cli import (
        audit,
        config_cmd,
        devices,
        discover,
        doctor,
        firstboot,
        hooks,
        keys,
        models,
        models_pin,
        rpc_server,
        serve,
        status,
        tui,
        upstream,
    )

    cli.add_command(serve.serve)
    cli.add_command(status.status)
    cli.add_command(devices.devices)
    cli.add_command(models.models)
    models.models.add_command(models_pin.pin)
    models.models.add_command(models_pin.unpin)
    cli.add_command(keys.keys)
    cli.add_command(config_cmd.config)
    cli.add_command(tui.tui)
    cli.add_command(audit.audit)
    cli.add_command(doctor.doctor)
    cli.add_command(hooks.hooks)
    cli.add_command(firstboot.firstboot)
    cli.add_command(discover.discover)
    cli.add_command(config_cmd.restart)
    cli.add_command(upstream.upstream)
    cli.add_command(rpc_server.rpc_server)


_register()


def main() -> None:
    try:
        cli.main(prog_name="appliance")
    except ApplianceError as error:  # raised outside a command (e.g. while parsing)
        click.echo(f"error: {error.message}", err=True)
        sys.exit(exit_code_for(error))


if __name__ == "__main__":
    main()
