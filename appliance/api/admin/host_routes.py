"""Admin: `GET /admin/host`, the box's memory, storage, load and network, for the dashboard.

Read from psutil when asked (cheap calls; no driver involved), in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import psutil
from fastapi import APIRouter

from appliance.api.admin.protocol import DiskUsage, HostStats, NetworkInterface
from appliance.api.deps import ServicesDep

router = APIRouter()


def _network() -> list[NetworkInterface]:
    stats = psutil.net_if_stats()
    found = []
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        shown = [a.address.split("%")[0] for a in addresses
                 if a.family in (socket.AF_INET, socket.AF_INET6)]  # fmt: skip
        if shown:
            up = bool(stats.get(name) and stats[name].isup)
            found.append(NetworkInterface(name=name, addresses=shown, up=up))
    return found


def host_stats(state_dir: Path) -> HostStats:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(state_dir))
    return HostStats(
        hostname=socket.gethostname(),
        memory_total_bytes=memory.total,
        memory_available_bytes=memory.available,
        swap_used_bytes=psutil.swap_memory().used,
        disk=DiskUsage(path=str(state_dir), total_bytes=disk.total, free_bytes=disk.free),
        load_average=os.getloadavg(),
        cpu_count=os.cpu_count() or 1,
        network=_network(),
    )


@router.get("/host", operation_id="admin_host")
async def host(services: ServicesDep) -> HostStats:
    return await asyncio.to_thread(host_stats, services.config.state_dir)
