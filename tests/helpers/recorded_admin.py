"""The admin API's answers recorded from a real daemon, replayed for the console's snapshots.

Snapshot tests need the same screen every run, which a live daemon (uptime, telemetry, pids)
cannot give; so the console reads a recording of a real daemon's answers through httpx's
MockTransport. Pilot tests use live daemons. Record again with:

    python tests/helpers/recorded_admin.py APPLIANCE_HOME tests/fixtures/console/daemon.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

PATHS = [
    "/admin/status",
    "/admin/host",
    "/admin/devices/telemetry?history=true",
    "/admin/devices/runtimes",
    "/admin/hooks",
    "/admin/logs?level=ERROR&limit=10",
    "/admin/logs?level=INFO&limit=500",
    "/admin/models",
    "/admin/catalog",
    "/admin/keys",
    "/admin/media",
    "/admin/config",
]
SYSTEM_HOME = "/var/lib/ai-appliance"


def record(home: Path) -> dict[str, Any]:
    transport = httpx.HTTPTransport(uds=str(home / "admin.sock"))
    found: dict[str, Any] = {}
    with httpx.Client(transport=transport, base_url="http://appliance", timeout=60) as http:
        for path in PATHS:
            found[path.split("&")[0]] = http.get(path).json()
        for model in found["/admin/models"]:
            name = model["name"]
            found[f"/admin/models/{name}"] = http.get(f"/admin/models/{name}").json()
            found[f"/admin/models/{name}/fit"] = http.get(f"/admin/models/{name}/fit").json()
    # Paths of the recording machine's temporary home read as a installed box's would.
    text = json.dumps(found, indent=1).replace(str(home), SYSTEM_HOME)
    return json.loads(text)


def _key(request: httpx.Request) -> str:
    path = request.url.path
    if path == "/admin/logs":
        return f"{path}?level={request.url.params.get('level', 'INFO')}"
    if path == "/admin/devices/telemetry":
        return f"{path}?history=true"
    return path


def replay(recording: dict[str, Any]) -> httpx.MockTransport:
    """A transport answering each recorded request; a log tail after the start is empty."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/admin/logs" and request.url.params.get("after", "0") != "0":
            return httpx.Response(200, json=[])
        key = _key(request)
        if key not in recording:
            body = {"code": "not_found", "message": f"not recorded: {key}", "title": "Not found"}
            return httpx.Response(404, json={"error": body})
        return httpx.Response(200, json=recording[key])

    return httpx.MockTransport(answer)


if __name__ == "__main__":
    out = Path(sys.argv[2])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record(Path(sys.argv[1])), indent=1) + "\n")
