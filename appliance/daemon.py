"""`appliance serve`: build the services, bind both listeners, load the default model, serve.

Two uvicorn servers share one event loop: the LAN API on TCP and the admin API on a Unix socket
that we bind ourselves (uvicorn's `--uds` would make it 0666; ours is 0660, group
`appliance-admin`). SIGTERM drains: the servers stop accepting connections, answers in progress
go on for `api.drain_s`, then the ones left are ended with an error event (a second signal
ends them at once); then the workers stop and the socket is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import math
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import uvicorn

from appliance import __version__
from appliance.api.app import create_admin_app, create_app
from appliance.api.metrics import Metrics, create_metrics_app
from appliance.config import Config, parse_listen
from appliance.devices import DeviceManager, DriverFailed
from appliance.discovery import Advertiser, Announcement, multicast_addresses
from appliance.engine.manager import EngineManager, Placer
from appliance.engine.scheduler import Scheduler
from appliance.errors import ApplianceError, ConfigError, StorageError
from appliance.firmware_hooks.runner import HookRunner
from appliance.logbuffer import LogBuffer
from appliance.placement import choose_default_model, place_model
from appliance.placement.draft import with_draft
from appliance.records import DeviceEvent, ModelInfo, ModelPlacement
from appliance.runtime.probe import abort_self_test
from appliance.sd_notify import Notifier
from appliance.service_notify import ServiceNotifier
from appliance.services import Services
from appliance.store.audit import AuditLog
from appliance.store.keys import KeyStore
from appliance.store.models import ModelStore
from appliance.store.vocab import VocabFingerprints
from appliance.tls import TlsState, certificate_for
from appliance.upstream import UpstreamPool

log = logging.getLogger("appliance.daemon")

ADMIN_GROUP = "appliance-admin"


_ONCE = (
    "Started server process [%d]",
    "Waiting for application startup.",
    "Shutting down",
    "Finished server process [%d]",
)


class _OncePerProcess(logging.Filter):
    """uvicorn says "Started server process [pid]", "Shutting down" and the like once per
    server; the daemon runs several in one process, and a journal needs each line once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in _ONCE:
            return True
        first = record.msg not in self._seen
        self._seen.add(str(record.msg))
        return first


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the daemon (two servers, one loop), and
    wakes once a second when idle instead of ten times.

    uvicorn polls `should_exit` every 0.1 s. With two or three servers that is 20-30 wake-ups a
    second of an idle daemon, each taking a core from the worker's compute threads for a moment
    (and its partner thread then spins at a barrier): about 1% of a long prompt's prefill on a
    2-core box. The Date header still changes each second, and a stop request wakes the loop at
    once.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit_requested.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit_requested.set()
        else:
            self._exit_requested.clear()

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        return contextlib.nullcontext()

    async def main_loop(self) -> None:
        counter = 0  # on_tick refreshes the Date header when counter % 10 == 0: every tick here
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000
            # A timeout scope, not wait_for (that starts a task each time), ending on the loop
            # clock's next whole second, so that all servers' ticks share one wake-up.
            deadline = math.floor(asyncio.get_running_loop().time()) + 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._exit_requested.wait()


def lan_url(host: str, port: int, *, https: bool = False) -> str:
    """The URL to show people: the box's LAN address when listening on every interface."""
    if host in ("0.0.0.0", "::", ""):
        host = _primary_address() or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{shown}:{port}/v1"


def _primary_address() -> str | None:
    stats = psutil.net_if_stats()
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if name == "lo" or not stats.get(name, None) or not stats[name].isup:
            continue
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def bind_admin_socket(path: Path) -> socket.socket:
    """Bind the admin socket with mode 0660; refuse if another daemon already answers there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the admin socket folder {path.parent}: {exc.strerror}"
        ) from None
    try:
        mode = path.lstat().st_mode  # lstat: a dangling link must not look like a free path
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(f"cannot check the admin socket path {path}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISSOCK(mode):
        kind = (
            "a symbolic link" if stat.S_ISLNK(mode)
            else "a directory" if stat.S_ISDIR(mode)
            else "a file"
        )  # fmt: skip
        raise ConfigError(
            f"the admin socket path {path} is {kind}, not a socket; remove it or set "
            "paths.admin_socket to another path"
        )
    if mode is not None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale socket left by a daemon that did not shut down cleanly
        else:
            raise ConfigError(
                f"another appliance daemon is already running on {path}; stop it first "
                "(systemctl stop ai-appliance) or use another APPLIANCE_HOME"
            )
        finally:
            probe.close()
    if len(str(path).encode()) > 107:
        raise ConfigError(f"admin socket path {path} is longer than the 107 bytes Linux allows")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # never let the socket exist with wider permissions
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot create the admin socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam(ADMIN_GROUP).gr_gid)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def bind_lan_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {host}:{port}: the port is in use (another appliance or "
                "web server?); choose another with api.listen or APPLIANCE_LISTEN"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _placer(config: Config, devices: DeviceManager, store: ModelStore) -> Placer:
    fingerprints = VocabFingerprints(config.state_dir)

    async def place(info: ModelInfo) -> ModelPlacement:
        # The runtime probe runs a child process the first time: keep it off the event loop.
        runtimes = await asyncio.to_thread(devices.runtimes)
        inventory = devices.devices()
        placement = place_model(info, inventory, runtimes, config)
        # A draft model's vocabulary is read from its file the first time: off the loop too.
        return await asyncio.to_thread(
            with_draft, placement, info, store.list(), config, fingerprints.of, inventory
        )

    return place


def build_services(config: Config) -> tuple[Services, str | None]:
    """Open the state, make sure an API key exists; return the services and a new key, if any."""
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the state folder {config.state_dir}: {exc.strerror}"
        ) from None
    store = ModelStore(config.state_dir)
    keys = KeyStore(config.database)
    new_key = None
    if config.api.require_api_key and keys.count_active() == 0:
        _, new_key = keys.create("initial", scope="user")
    devices = DeviceManager.from_config(config)
    try:
        devices.refresh()
    except DriverFailed as error:  # the operator named a vendor: say it failed, do not guess
        raise ConfigError(str(error)) from None
    host, port = config.listen_address
    hooks = HookRunner.from_config(config)
    certificate = certificate_for(config)
    upstreams = UpstreamPool(config)
    upstreams.load()  # a broken upstreams file stops the start with a one-line error
    services = Services(
        config=config,
        store=store,
        keys=keys,
        engine=EngineManager(
            config, listener=hooks.run_async, placer=_placer(config, devices, store)
        ),
        devices=devices,
        hooks=hooks,
        api_url=config.api.public_url or lan_url(host, port, https=certificate is not None),
        tls=TlsState(config, certificate) if certificate else None,
        scheduler=Scheduler(queue_size=config.engine.queue_size),
        audit=AuditLog(config.database),
        upstreams=upstreams,
    )
    if config.metrics.enabled:
        services.metrics = Metrics(services)
    services.advertiser = advertiser_for(config, services)
    services.default_model = choose_default_model(store.list(), devices.devices(), config)
    return services, new_key


def advertiser_for(config: Config, services: Services) -> Advertiser | None:
    """The mDNS announcement of the LAN API, or None when discovery is off."""
    if not config.discovery.enabled:
        return None
    host, port = config.listen_address
    addresses, why_not = multicast_addresses(host)
    certificate = services.tls.certificate if services.tls else None
    advertiser = Advertiser(
        Announcement(
            name=config.discovery.name or f"AI appliance on {socket.gethostname()}",
            port=port,
            addresses=addresses,
            tls=certificate is not None,
            api_key_required=config.api.require_api_key,
            version=__version__,
            fingerprint=certificate.fingerprint if certificate else None,
        )
    )
    if why_not:
        advertiser.summary = f"not announced: {why_not}"
    return advertiser


async def _advertise(advertiser: Advertiser) -> None:
    """Announce the API; a LAN without multicast must not keep the box from serving."""
    if not advertiser.announcement.addresses:
        log.info("mDNS: %s", advertiser.summary)
        return
    try:
        await advertiser.start()
    except Exception as error:  # zeroconf raises OSError, NonUniqueNameException, timeouts...
        advertiser.summary = f"failed: {error or type(error).__name__}"
        log.warning("mDNS announcement failed (the API still serves): %s", advertiser.summary)


async def _withdraw(advertiser: Advertiser) -> None:
    try:
        if await advertiser.stop():
            log.info("mDNS: announcement withdrawn")
    except Exception as error:  # shutting down: a failed goodbye only delays other boxes' view
        log.warning("mDNS goodbye failed: %s", error)
    advertiser.summary = "withdrawn: the appliance is shutting down"


def announce(services: Services, new_key: str | None) -> None:
    """What the administrator needs, on stdout: where to point clients and with which key."""
    config = services.config
    lines = [
        f"AI appliance {__version__} serving on {config.api.listen}",
        f"LAN API (OpenAI base URL): {services.api_url}",
    ]
    if not config.api.require_api_key:
        lines.append("API key: not required (api.require_api_key = false)")
    elif new_key:
        lines.append(f"API key: {new_key}")
        lines.append("  (shown once; store it now. More keys: `appliance keys create`)")
    else:
        active = services.keys.count_active()
        lines.append(
            f"API keys: {active} active (each shown once, at creation; "
            "new one: `appliance keys create`)"
        )
    if services.tls is not None:
        certificate = services.tls.certificate
        kind = "self-signed certificate" if certificate.self_signed else "certificate"
        lines.append(f"TLS: {kind}, SHA-256 fingerprint {certificate.fingerprint}")
        if certificate.self_signed:
            lines.append(f"  (clients trust the file {certificate.cert_file}; see docs/api.md)")
    if config.metrics.enabled:
        where = (
            f"http://{config.metrics.listen}/metrics"
            if config.metrics.listen
            else ("/metrics on the LAN API (with an API key)")
        )
        lines.append(f"Metrics: {where}")
    advertiser = services.advertiser
    if advertiser is None:
        lines.append("mDNS: off (discovery.enabled)")
    elif advertiser.announcement.addresses:
        found = advertiser.announcement
        lines.append(f"mDNS: announcing '{found.name}' on {', '.join(found.addresses)}")
    else:
        lines.append(f"mDNS: {advertiser.summary}")
    lines.append(f"Admin socket: {config.admin_socket}  (`appliance tui`, `appliance status`)")
    model = services.default_model or "none installed (`appliance models import FILE`)"
    lines.append(f"Default model: {model}")
    print("\n".join(lines), flush=True)


async def _serve(
    services: Services,
    lan: socket.socket,
    admin: socket.socket,
    metrics_sock: socket.socket | None = None,
) -> None:
    drain_s = services.config.api.drain_s
    # uvicorn's own limit is a backstop: by then `expire` has ended every answer with an error.
    quiet = {"log_config": None, "access_log": False, "lifespan": "off",
             "timeout_graceful_shutdown": drain_s + 10}  # fmt: skip
    lan_config = uvicorn.Config(create_app(services), **quiet)  # type: ignore[arg-type]
    if services.tls is not None:
        lan_config.load()
        # Our own context, not uvicorn's: SIGHUP loads a new certificate into this one object.
        lan_config.ssl = services.tls.context
    servers = [
        _Server(lan_config),
        _Server(uvicorn.Config(create_admin_app(services), **quiet)),  # type: ignore[arg-type]
    ]
    sockets = [lan, admin]
    if metrics_sock is not None:
        servers.append(_Server(uvicorn.Config(create_metrics_app(services), **quiet)))  # type: ignore[arg-type]
        sockets.append(metrics_sock)
    loop = asyncio.get_running_loop()

    expiry: list[asyncio.TimerHandle] = []
    mdns: list[asyncio.Task[None]] = []

    def expire() -> None:
        reason = (
            f"the appliance is shutting down and its drain time ({drain_s:g} s) ran out "
            "before this answer was finished; retry when it is back"
        )
        ended = services.engine.abort_all(reason) + services.scheduler.abort_waiting(reason)
        if ended:
            log.warning("drain time over: ended %d answer(s) in progress", ended)

    def stop(signame: str) -> None:
        if expiry:
            log.info("received %s again; ending the answers in progress now", signame)
            expiry[0].cancel()
            expire()
            return
        log.info(
            "received %s; taking no new connections, answers in progress may go on for %g s",
            signame, drain_s,
        )  # fmt: skip
        services.engine.drain(
            "the appliance is shutting down; no model is loaded while it stops. Retry when it "
            "is back"
        )
        abort_self_test()  # a CPU variant self-test in progress must not hold the exit up
        if services.advertiser is not None:
            # Goodbye packets now: clients on the LAN stop offering a box that takes no one.
            for task in mdns:
                task.cancel()
            mdns.append(loop.create_task(_withdraw(services.advertiser)))
        for server in servers:
            server.should_exit = True
        expiry.append(loop.call_later(drain_s, expire))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)

    def restart() -> None:
        services.restart_requested = True
        stop("a restart request")

    services.request_restart = restart
    loop.add_signal_handler(signal.SIGHUP, reload_tls, services)
    services.engine.start()
    if services.upstreams is not None:
        services.upstreams.start()
    startup = asyncio.create_task(_boot(services), name="boot")
    unsubscribe = services.devices.subscribe(device_event_handler(services, loop))
    settings = services.config.devices
    watch = asyncio.create_task(
        services.devices.run(settings.telemetry_interval_s, hotplug=settings.hotplug),
        name="devices",
    )
    prune = asyncio.create_task(_prune_audit_daily(services), name="audit-prune")
    if services.advertiser is not None:
        mdns.append(asyncio.create_task(_advertise(services.advertiser), name="mdns"))
    # systemd (Type=notify): readiness, status and the watchdog; a no-op outside systemd.
    notifier = Notifier()
    reporter = ServiceNotifier(
        services, notifier, listening=lambda: all(server.started for server in servers)
    )
    reporting = asyncio.create_task(reporter.run(), name="sd-notify")
    try:
        await asyncio.gather(
            *(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True))
        )
    finally:
        notifier.stopping("stopping: unloading models")
        reporting.cancel()
        startup.cancel()
        watch.cancel()
        prune.cancel()
        unsubscribe()
        if services.advertiser is not None:
            mdns[0].cancel()  # still registering: stop that, then say goodbye
            await asyncio.gather(*mdns, return_exceptions=True)
            await _withdraw(services.advertiser)
        await services.engine.shutdown()
        if services.upstreams is not None:
            await services.upstreams.shutdown()
        notifier.close()


def device_event_handler(
    services: Services, loop: asyncio.AbstractEventLoop
) -> Callable[[DeviceEvent], None]:
    """What the daemon does when hardware comes or goes: fail the models on a lost device,
    then run the `device-added` / `device-removed` hooks with the event as payload.

    The device manager may call this from a worker thread (discovery blocks on vendor tools),
    so the work is handed to the event loop, where the engine manager's state lives.
    """
    tasks: set[asyncio.Task[object]] = set()

    def handle(event: DeviceEvent) -> None:
        payload = event.model_dump(mode="json")
        if event.action == "removed" and event.device_id:
            failed = services.engine.fail_models_on_device(
                event.device_id, f"{event.device_id} disappeared from the {event.subsystem} bus"
            )
            payload["failed_models"] = failed
            if failed:
                log.error("device %s lost; failed models: %s", event.device_id, failed)
        if event.action in ("added", "removed"):
            task = loop.create_task(services.hooks.run_async(f"device-{event.action}", payload))
            tasks.add(task)  # keep a reference until done, or the task may be collected
            task.add_done_callback(tasks.discard)

    def from_any_thread(event: DeviceEvent) -> None:
        loop.call_soon_threadsafe(handle, event)

    return from_any_thread


def reload_tls(services: Services) -> None:
    """SIGHUP: present the certificate files again (new connections); keep the old on error."""
    if services.tls is None:
        log.info("received SIGHUP; TLS is off, nothing to reload")
        return
    try:
        certificate = services.tls.reload()
    except ApplianceError as error:
        log.error("received SIGHUP; kept the old TLS certificate: %s", error.message)
        return
    log.info("received SIGHUP; TLS certificate reloaded, SHA-256 fingerprint %s",
             certificate.fingerprint)  # fmt: skip


async def _prune_audit_daily(services: Services) -> None:
    """Delete audit entries past `audit.retention_days`: at start, then once a day."""
    while services.audit is not None:
        try:
            removed = await asyncio.to_thread(
                services.audit.prune, services.config.audit.retention_days
            )
            if removed:
                log.info("audit log: removed %d entries past the retention", removed)
        except ApplianceError as error:
            log.warning("audit log pruning failed: %s", error.message)
        await asyncio.sleep(86400)


def record_version(state_dir: Path) -> str | None:
    """Write this version to `<state>/version`; return the one that ran before, if another."""
    marker = state_dir / "version"
    try:
        previous: str | None = marker.read_text().strip() or None
    except OSError:
        previous = None
    if previous != __version__:
        partial = marker.with_name("version.partial")
        try:
            partial.write_text(__version__ + "\n")
            partial.replace(marker)
        except OSError as error:
            log.warning("cannot record the version in %s: %s", marker, error.strerror)
    return previous if previous != __version__ else None


async def _boot(services: Services) -> None:
    """Update hooks after an upgrade, boot hooks (they may check drivers and firmware), then the
    default model."""
    previous = record_version(services.config.state_dir)
    if previous is not None:
        log.info("upgraded from %s to %s: running the update hooks", previous, __version__)
        await services.hooks.run_async("update", {"from": previous, "to": __version__})
    devices = [device.model_dump(mode="json") for device in services.devices.devices()]
    await services.hooks.run_async("boot", {"devices": devices})
    if services.default_model:
        try:
            info = services.store.get(services.default_model)
        except ApplianceError as error:  # reported by /ready too; the daemon keeps serving
            log.error("default model: %s", error.message)
        else:
            services.engine.start_loading(info, pinned=True)
    # The runtime probe loads llama.cpp in a child process; do it now, off the loop, so that the
    # first placement question is answered from the cache.
    await asyncio.to_thread(services.devices.runtimes)


def serve(config: Config) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.error").addFilter(_OncePerProcess())
    # Attached before the services are built, so the console sees device discovery too.
    recent = LogBuffer()
    logging.getLogger().addHandler(recent)
    services, new_key = build_services(config)
    services.logs = recent
    host, port = config.listen_address
    lan = bind_lan_socket(host, port)
    metrics_sock = None
    if config.metrics.enabled and config.metrics.listen:
        metrics_sock = bind_lan_socket(*parse_listen(config.metrics.listen))
    admin = bind_admin_socket(config.admin_socket)
    try:
        announce(services, new_key)
        asyncio.run(_serve(services, lan, admin, metrics_sock))
    finally:
        lan.close()
        admin.close()
        if metrics_sock is not None:
            metrics_sock.close()
        with contextlib.suppress(FileNotFoundError):
            config.admin_socket.unlink()
    if services.restart_requested:
        start_again()


# systemd: the unit lists this status in RestartForceExitStatus= and SuccessExitStatus=, so the
# service manager starts the daemon again (fresh cgroup, same unit) and does not count a failure.
RESTART_EXIT_STATUS = 75


def start_again() -> None:
    """After a drained stop asked for by `POST /admin/restart`: under systemd, exit and let
    the unit start us; anywhere else, replace this process with a new `appliance serve`."""
    if os.environ.get("INVOCATION_ID") or os.environ.get("NOTIFY_SOCKET"):
        log.info("restarting: exiting with status %d for systemd to start us again",
                 RESTART_EXIT_STATUS)  # fmt: skip
        sys.exit(RESTART_EXIT_STATUS)
    argv = [sys.executable, "-m", "appliance", *sys.argv[1:]]
    log.info("restarting: %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
