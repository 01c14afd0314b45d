"""`appliance rpc-server`: run llama.cpp's RPC server so another box can use this one's memory.

A thin front to the `rpc-server` binary of the installed llama.cpp runtime (built with
GGML_RPC, `build-llama-runtime.sh --rpc`): it checks the configuration, then replaces itself
with the binary, so systemd (`ai-appliance-rpc.service`) supervises llama.cpp's own process.
The RPC protocol has no authentication: it refuses to listen on every interface.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import click

from appliance.cli.state import CliState, pass_state
from appliance.config import Config, parse_listen
from appliance.errors import ConfigError, EngineError

BINARIES = ("ggml-rpc-server", "rpc-server")
"""llama.cpp's RPC server: `ggml-rpc-server` in the vendored version (tools/rpc), `rpc-server`
in older ones and some distributions' packages."""


def runtime_folders(config: Config) -> list[Path]:
    from appliance.runtime.builds import DEFAULT_ROOT, find_builds

    return [build.path for build in find_builds(config.runtime.llama_dir or DEFAULT_ROOT)]


def find_binary(config: Config) -> Path:
    """llama.cpp's rpc-server: in a runtime build folder (the preferred build first), else PATH."""
    folders = runtime_folders(config)
    for folder in folders:
        for name in BINARIES:
            if (folder / name).is_file() and os.access(folder / name, os.X_OK):
                return folder / name
    for name in BINARIES:
        on_path = shutil.which(name)
        if on_path:
            return Path(on_path)
    where = ", ".join(str(f) for f in folders) or "no runtime build found"
    raise EngineError(
        f"no llama.cpp RPC server ({' or '.join(BINARIES)}) in the installed runtime ({where}) "
        "or on PATH: the runtime was built without GGML_RPC. Build one with "
        "`packaging/runtime/build-llama-runtime.sh --rpc` (see docs/scale-out.md), or install "
        "llama.cpp's rpc-server on PATH"
    )


def command_line(config: Config) -> list[str]:
    listen = config.rpc.server_listen
    if not listen:
        raise ConfigError(
            "rpc.server_listen is not set: give the address on the RPC network segment this "
            'box should listen on, e.g. `server_listen = "192.168.50.2:50052"` under [rpc]'
        )
    host, port = parse_listen(listen)
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = False  # a host name: bound to what it resolves to
    if wildcard:
        raise ConfigError(
            f"rpc.server_listen = {listen!r} would accept RPC from every network; the llama.cpp "
            "RPC protocol has no authentication, so bind it to one address on a dedicated "
            "segment (docs/scale-out.md)"
        )
    args = [str(find_binary(config)), "-H", host, "-p", str(port)]
    if config.rpc.server_device:
        args += ["-d", config.rpc.server_device]
    if config.rpc.server_threads:
        args += ["-t", str(config.rpc.server_threads)]
    return args


@click.command("rpc-server")
@click.option("--print-command", is_flag=True, help="Print the rpc-server command and exit.")
@pass_state
def rpc_server(state: CliState, print_command: bool) -> None:
    """Lend this box's device to other appliances over llama.cpp RPC (no authentication:
    a dedicated network segment only; see rpc.server_listen)."""
    args = command_line(state.config)
    if print_command:
        click.echo(" ".join(args))
        return
    click.echo(f"starting {' '.join(args)}", err=True)
    os.execv(args[0], args)
