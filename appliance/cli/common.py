"""Helpers shared by CLI commands: reach the daemon if it runs, print JSON or tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console

from appliance.client import AdminClient
from appliance.config import Config

# Tables and progress go to the terminal; JSON output goes to stdout untouched.
stdout_console = Console(soft_wrap=True)
stderr_console = Console(stderr=True)


@contextmanager
def daemon_or_none(config: Config) -> Iterator[AdminClient | None]:
    """An admin client when a daemon answers on this home's socket, else None (direct mode)."""
    if not config.admin_socket.exists():
        yield None
        return
    client = AdminClient(config.admin_socket)
    try:
        yield client if client.is_running() else None
    finally:
        client.__exit__()


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
