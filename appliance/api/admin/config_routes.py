"""Admin: the daemon's settings. `GET /admin/config` shows them (and which the console may
change), `PATCH /admin/config` validates and saves changes (in `<state>/settings.toml`, see
`appliance.config_overrides`), `POST /admin/restart` drains and starts the daemon again so that
saved changes apply."""

from __future__ import annotations

import asyncio
import os
import tomllib
from typing import Any

from fastapi import APIRouter, status

from appliance.api.admin.protocol import (
    DaemonSettings,
    EditableSetting,
    Restarting,
    SettingsChange,
    SettingsSaved,
)
from appliance.api.deps import ServicesDep
from appliance.config import Config, default_config_path, load_config, with_changes
from appliance.config_overrides import EDITABLE, as_flat, read_overrides, write_overrides
from appliance.errors import ConfigError, DaemonUnreachable

router = APIRouter()


def _variables(key: str) -> list[str]:
    names = ["APPLIANCE_" + key.upper().replace(".", "__")]
    return names + (["APPLIANCE_LISTEN"] if key == "api.listen" else [])


def _in_environment(key: str) -> bool:
    return any(name in os.environ for name in _variables(key))


def _source(key: str, console: dict[str, Any], file_keys: set[str]) -> str:
    if _in_environment(key):
        return "environment"
    if key in console:
        return "console"
    return "file" if key in file_keys else "default"


def _editable(
    running: Config, default_model: str | None
) -> tuple[list[EditableSetting], list[str]]:
    now = as_flat(running.model_dump(mode="json"))
    now["default_model"] = default_model  # the one chosen at start, named or not
    console = as_flat(read_overrides(running.state_dir))
    try:
        upcoming = as_flat(load_config().model_dump(mode="json"))
        file_keys = set(as_flat(_file_data()))
    except ConfigError:  # a broken file: show what runs; the next start will say what is wrong
        upcoming, file_keys = now, set()
    rows, pending = [], []
    for key, meaning in EDITABLE.items():
        differs = upcoming.get(key) != now.get(key)
        if differs:
            pending.append(key)
        rows.append(
            EditableSetting(
                key=key, value=now.get(key), saved=upcoming.get(key) if differs else None,
                source=_source(key, console, file_keys), meaning=meaning,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    return rows, pending


def _file_data() -> dict[str, Any]:
    path = default_config_path()
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


@router.get("/config", operation_id="admin_config")
async def config(services: ServicesDep) -> DaemonSettings:
    path = default_config_path()
    editable, pending = await asyncio.to_thread(_editable, services.config, services.default_model)
    return DaemonSettings(
        settings=services.config.model_dump(mode="json"),
        config_file=str(path),
        config_file_exists=path.is_file(),
        editable=editable,
        restart_pending=pending,
    )


@router.patch("/config", operation_id="admin_config_change")
async def change_config(body: SettingsChange, services: ServicesDep) -> SettingsSaved:
    """Validate the changes against the whole configuration, then save them atomically;
    nothing is saved when any of them is wrong."""

    def save() -> tuple[Config, str]:
        upcoming, flat = with_changes(body.changes)
        return upcoming, str(write_overrides(services.config.state_dir, flat))

    upcoming, saved_to = await asyncio.to_thread(save)
    now = as_flat(services.config.model_dump(mode="json"))
    now["default_model"] = services.default_model  # the one chosen at start, named or not
    after = as_flat(upcoming.model_dump(mode="json"))
    return SettingsSaved(
        saved_to=saved_to,
        restart_required=[key for key in body.changes if after.get(key) != now.get(key)],
        overridden_by_environment=[key for key in body.changes if _in_environment(key)],
    )


@router.post("/restart", operation_id="admin_restart", status_code=status.HTTP_202_ACCEPTED)
async def restart(services: ServicesDep) -> Restarting:
    """Drain like SIGTERM, then start again with the saved settings (same process under
    systemd's care: the unit restarts it; elsewhere the daemon executes itself anew)."""
    if services.request_restart is None:  # the CLI's in-process admin app: no daemon runs
        raise DaemonUnreachable(
            f"the appliance daemon is not running (nothing answers on "
            f"{services.config.admin_socket}), so there is nothing to restart; start it with "
            "`systemctl start ai-appliance` or `appliance serve`"
        )
    try:
        load_config()  # a start that would fail must not be begun by stopping this one
    except ConfigError as error:
        raise ConfigError(
            f"not restarting: the saved settings would not start: {error.message}"
        ) from None
    asyncio.get_running_loop().call_soon(services.request_restart)
    drain = services.config.api.drain_s
    return Restarting(
        message=f"restarting: answers in progress may finish (up to {drain:g} s), then the "
        "daemon starts again with the saved settings"
    )
