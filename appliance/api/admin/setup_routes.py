"""Admin: the first-boot wizard's record. `POST /admin/setup` marks the box set up (the console
stops offering the wizard); `GET /admin/status` reports it as `setup_complete`.

The marker is `<state>/setup.json` (what was chosen, when, by which version), written
atomically; it is state, so it survives upgrades and goes with a purge.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from fastapi import APIRouter

from appliance import __version__
from appliance.api.admin.protocol import SetupDone
from appliance.api.deps import ServicesDep
from appliance.atomic_file import write_atomically

router = APIRouter()

SETUP_FILE = "setup.json"


def setup_marker(state_dir: Path) -> Path:
    return state_dir / SETUP_FILE


def is_set_up(state_dir: Path) -> bool:
    return setup_marker(state_dir).is_file()


def _write(path: Path, record: dict[str, object]) -> None:
    write_atomically(path, json.dumps(record, indent=2), what="record the setup in")


@router.post("/setup", operation_id="admin_setup_done")
async def setup_done(body: SetupDone, services: ServicesDep) -> SetupDone:
    record = {"at": time.time(), "version": __version__, **body.model_dump()}
    await asyncio.to_thread(_write, setup_marker(services.config.state_dir), record)
    return body
