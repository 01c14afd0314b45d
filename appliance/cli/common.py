"""Helpers shared by CLI commands: the admin API (the daemon's, or served in-process), output.

Every admin command goes through `admin_client`: one code path, whether a daemon runs or not.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console

from appliance.client import AdminClient
from appliance.client.admin import not_in_admin_group
from appliance.config import Config

# Tables and progress go to the terminal; JSON output goes to stdout untouched.
stdout_console = Console(soft_wrap=True)
stderr_console = Console(stderr=True)


@contextmanager
def admin_client(config: Config) -> Iterator[AdminClient]:
    """A client of the admin API: the running daemon's, over its socket; with no daemon, the
    same admin app served in this process over the same state (`appliance.offline`), so that
    offline operations (an import before the first start, keys, removals) behave and fail
    exactly as the daemon's do. Operations that need a running engine (loading, status) then
    answer `DaemonUnreachable`."""
    if daemon_listening(config):
        with AdminClient(config.admin_socket) as client:
            yield client
        return
    from appliance.client.inprocess import InProcessTransport
    from appliance.offline import offline_admin_app  # the daemon's stack: only when needed

    with offline_admin_app(config) as app:
        transport = InProcessTransport(app)
        with AdminClient(config.admin_socket, transport=transport) as client:
            yield client


def daemon_listening(config: Config) -> bool:
    """True when a daemon listens on the admin socket. A socket this user may not open is an
    error (not "no daemon"): acting on the state behind the daemon's back would fail later,
    on a file, with a message that names the wrong problem."""
    path = config.admin_socket
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except PermissionError:
        raise not_in_admin_group(path) from None
    except OSError:
        return False  # no socket, or one left behind by a daemon that stopped
    finally:
        probe.close()
    return True


def echo_json(data: BaseModel | list[Any] | dict[str, Any]) -> None:
    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, list):
        payload = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    else:
        payload = data
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def human_bytes(size: int | float) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
