"""The admin API without a daemon: the daemon's own admin app, over the same state, in-process.

The CLI always speaks the admin API. When no daemon answers on the admin socket it serves this
app in its own process (`client.inprocess.InProcessTransport`), so that importing a model before
the first start, making keys or reading the audit log run the daemon's routes and give the
daemon's errors. Only what an offline call needs is built: the store, keys and audit log; the
devices are discovered on first use (no telemetry poller, no udev monitor); no hooks fire; and
no engine runs: loading, chatting or asking what is loaded answers `DaemonUnreachable`.

May import what the daemon does, except uvicorn and the daemon itself; only the CLI imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from appliance.api.app import create_admin_app
from appliance.config import Config
from appliance.devices import DeviceManager, DriverFailed
from appliance.engine.manager import EngineManager
from appliance.errors import ConfigError, DaemonUnreachable, StorageError
from appliance.firmware_hooks.runner import HookRunner
from appliance.records import Accelerator, LoadedModel, ModelInfo, ModelPlacement, Telemetry
from appliance.services import Services
from appliance.store.audit import AuditLog
from appliance.store.keys import KeyStore
from appliance.store.models import ModelStore
from appliance.upstream import UpstreamPool

_START = "start it with `systemctl start ai-appliance` or `appliance serve`"


def needs_daemon(config: Config, what: str) -> DaemonUnreachable:
    return DaemonUnreachable(
        f"{what} needs the appliance daemon, which is not running (nothing answers on "
        f"{config.admin_socket}); {_START}"
    )


class NoEngine(EngineManager):
    """An engine manager that never starts a worker: with no daemon, no model is loaded."""

    def __init__(self, config: Config) -> None:
        async def refuse(info: ModelInfo) -> ModelPlacement:  # unreached: start_loading refuses
            raise needs_daemon(config, f"loading {info.name}")

        super().__init__(config, placer=refuse)

    def loaded(self) -> list[LoadedModel]:
        raise DaemonUnreachable(
            f"the appliance daemon is not running (nothing answers on {self.config.admin_socket}),"
            f" so no model is loaded; {_START}"
        )

    def start_loading(self, info: ModelInfo, *, pinned: bool = False) -> asyncio.Task[None]:
        raise needs_daemon(self.config, f"loading or using {info.name}")

    def set_pinned(self, name: str, pinned: bool) -> LoadedModel:
        raise needs_daemon(self.config, f"{'pinning' if pinned else 'unpinning'} {name}")


class OnDemandDevices(DeviceManager):
    """Discovery on the first question, and a fresh telemetry sample per question, since no
    poller runs outside the daemon (and a `keys list` must not scan the hardware)."""

    _discovered = False

    def devices(self) -> list[Accelerator]:
        if not self._discovered:
            self._discovered = True
            try:
                self.refresh()
            except DriverFailed as error:  # the operator named a vendor: as the daemon says
                raise ConfigError(str(error)) from None
        return super().devices()

    def telemetry(self) -> dict[str, Telemetry]:
        self.devices()
        return self.sample_once()


def offline_services(config: Config) -> Services:
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the state folder {config.state_dir}: {exc.strerror}"
        ) from None
    return Services(
        config=config,
        store=ModelStore(config.state_dir),
        keys=KeyStore(config.database),
        engine=NoEngine(config),
        devices=OnDemandDevices.from_config(config),
        hooks=HookRunner.from_config(config),
        api_url=config.api.public_url or "",
        audit=AuditLog(config.database),
        upstreams=_upstreams(config),
    )


def _upstreams(config: Config) -> UpstreamPool:
    """The upstreams file, so `appliance upstream add/list/rm` work before the first start
    (no health loop runs; `add` checks the new one once, as the daemon does)."""
    pool = UpstreamPool(config)
    pool.load()
    return pool


@contextmanager
def offline_admin_app(config: Config) -> Iterator[FastAPI]:
    """The admin app over this config's state; the stores are closed on exit."""
    services = offline_services(config)
    try:
        yield create_admin_app(services)
    finally:
        services.store.close()
        services.keys.close()
        if services.audit is not None:
            services.audit.close()
