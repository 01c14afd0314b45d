"""The daemon's long-lived parts, built once by `daemon.py` and handed to the API apps.

Holding them in one object (rather than import-time globals) lets tests build an app on a
temporary home, and lets the LAN and admin apps share the same engine and store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Config
from appliance.devices import DeviceManager
from appliance.discovery import Advertiser
from appliance.engine.manager import EngineManager
from appliance.engine.scheduler import KeyRates, Scheduler
from appliance.firmware_hooks.runner import HookRunner
from appliance.logbuffer import LogBuffer
from appliance.store.audit import AuditLog
from appliance.store.keys import KeyStore
from appliance.store.models import ModelStore
from appliance.tls import TlsState
from appliance.upstream import UpstreamPool


@dataclass
class Services:
    config: Config
    store: ModelStore
    keys: KeyStore
    engine: EngineManager
    devices: DeviceManager
    hooks: HookRunner
    api_url: str
    """The LAN URL people should use, e.g. `http://192.168.1.20:8080/v1`."""
    started_at: float = field(default_factory=time.time)
    default_model: str | None = None
    """The model chosen at start (config `default_model`, else the best installed one)."""
    logs: LogBuffer = field(default_factory=LogBuffer)
    """Recent log records for `GET /admin/logs`; `serve()` attaches it to the root logger."""

    scheduler: Scheduler = field(default_factory=lambda: Scheduler(queue_size=64))
    """Admission to model slots, round-robin across keys (built with engine.queue_size)."""
    key_rates: KeyRates = field(default_factory=KeyRates)
    audit: AuditLog | None = None
    tls: TlsState | None = None
    """The LAN listener's certificate and SSL context; None when `tls.mode` is off."""
    advertiser: Advertiser | None = None
    """The mDNS announcement of the LAN API; None when `discovery.enabled` is off."""
    request_restart: Callable[[], None] | None = None
    """Drain and start again (`POST /admin/restart`); set by the daemon's serve loop."""
    restart_requested: bool = False
    upstreams: UpstreamPool | None = None
    """Model names forwarded to OpenAI-compatible servers (`appliance upstream add`)."""
    metrics: Any = None
    """`api.metrics.Metrics` when metrics are on (typed loosely: services may not import api)."""
