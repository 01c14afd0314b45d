"""LAN discovery over mDNS / DNS-SD: the daemon announces its API, `appliance discover` finds it.

Two service types are announced for the LAN API: `_appliance._tcp` (what `appliance discover`
browses; its TXT says everything a client needs) and `_http._tcp` (so generic service browsers
list the box too). TXT keys: `path` (OpenAI base path), `ollama` (Ollama base path), `tls`
(`1`/`0`), `auth` (`key`/`none`), `version`, and `fp` (the certificate's SHA-256 fingerprint,
so a client can pin the self-signed certificate it sees on first connection).

Only addresses the API really listens on are announced, and only on interfaces that carry
multicast: a daemon bound to 127.0.0.1 on a loopback without multicast has nothing to tell the
LAN, and says so in the log instead of failing.

May import: config, records, errors, and the `zeroconf` library; nothing of the daemon's stack.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

import psutil
from zeroconf import InterfaceChoice, ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf
from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger("appliance.discovery")

APPLIANCE_TYPE = "_appliance._tcp.local."
HTTP_TYPE = "_http._tcp.local."


@dataclass(frozen=True)
class Announcement:
    """What the daemon tells the LAN about its API."""

    name: str
    """Instance name people see, e.g. `AI appliance on box-3`."""
    port: int
    addresses: list[str]
    tls: bool
    api_key_required: bool
    version: str
    fingerprint: str | None = None

    def properties(self) -> dict[str, str]:
        txt = {
            "path": "/v1",
            "ollama": "/",
            "tls": "1" if self.tls else "0",
            "auth": "key" if self.api_key_required else "none",
            "version": self.version,
        }
        if self.fingerprint:
            txt["fp"] = self.fingerprint
        return txt


def multicast_addresses(host: str) -> tuple[list[str], str | None]:
    """The addresses to announce for a listener on `host`, or none and the reason why.

    `0.0.0.0` / `::` mean every up, multicast-capable interface's addresses (IPv4 for
    `0.0.0.0`, both families for `::`); a named address is announced only if its interface
    carries multicast.
    """
    stats = psutil.net_if_stats()
    wildcard = host in ("", "0.0.0.0", "::")
    families = {socket.AF_INET, socket.AF_INET6} if host == "::" else {socket.AF_INET}
    found: list[str] = []
    silent: list[str] = []
    for interface, addresses in sorted(psutil.net_if_addrs().items()):
        nic = stats.get(interface)
        for address in addresses:
            value = address.address.split("%", 1)[0]
            if wildcard:
                if address.family not in families or interface == "lo":
                    continue
                if ipaddress.ip_address(value).is_link_local:
                    continue
            elif value != host:
                continue
            if nic is not None and nic.isup and "multicast" in nic.flags.split(","):
                found.append(value)
            else:
                silent.append(interface)
    if found:
        return found, None
    if silent:
        return [], (
            f"the API listens on {host} but {', '.join(sorted(set(silent)))} carries no "
            "multicast; nothing announced"
        )
    return [], f"no up interface with multicast has the address {host or 'any'}; nothing announced"


class Advertiser:
    """Registers the daemon's services at start and sends goodbyes at stop."""

    def __init__(self, announcement: Announcement) -> None:
        self.announcement = announcement
        self.summary = f"registering '{announcement.name}' on {', '.join(announcement.addresses)}"
        """One line for `appliance status` and the console."""
        self._zeroconf: AsyncZeroconf | None = None
        self._infos: list[ServiceInfo] = []

    def _service_infos(self) -> list[ServiceInfo]:
        found = self.announcement
        packed = [ipaddress.ip_address(a).packed for a in found.addresses]
        host = socket.gethostname().split(".", 1)[0] or "appliance"
        return [
            ServiceInfo(
                kind,
                f"{found.name}.{kind}",
                port=found.port,
                addresses=packed,
                properties=found.properties(),
                server=f"{host}.local.",
            )
            for kind in (APPLIANCE_TYPE, HTTP_TYPE)
        ]

    async def start(self) -> None:
        found = self.announcement
        self._zeroconf = AsyncZeroconf(interfaces=found.addresses)
        infos = self._service_infos()
        for info in infos:
            # Another box with the same name on the LAN: take "name (2)" rather than fail.
            # zeroconf returns the broadcast as a task of its own: wait until it is on the wire.
            await (await self._zeroconf.async_register_service(info, allow_name_change=True))
        self._infos = infos
        shown = infos[0].name.removesuffix(f".{APPLIANCE_TYPE}")
        self.summary = f"advertised as '{shown}' on {', '.join(found.addresses)}"
        log.info("mDNS: %s", self.summary)

    async def stop(self) -> bool:
        """Send goodbyes and close; False when there was nothing to withdraw (safe to repeat)."""
        if self._zeroconf is None:
            return False
        zeroconf, self._zeroconf = self._zeroconf, None
        try:
            for info in self._infos:
                await (await zeroconf.async_unregister_service(info))
        finally:
            await zeroconf.async_close()
        return True


@dataclass
class DiscoveredBox:
    """An appliance seen on the LAN."""

    name: str
    url: str
    """OpenAI base URL."""
    addresses: list[str]
    port: int
    tls: bool
    api_key_required: bool
    version: str
    fingerprint: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


def _decode(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    return {
        key.decode("utf-8", "replace"): (value or b"").decode("utf-8", "replace")
        for key, value in properties.items()
    }


def box_from_info(info: ServiceInfo) -> DiscoveredBox:
    txt = _decode(info.properties)
    addresses = info.parsed_scoped_addresses()
    tls = txt.get("tls") == "1"
    first = addresses[0] if addresses else (info.server or "").rstrip(".")
    host = f"[{first}]" if ":" in first else first
    return DiscoveredBox(
        name=info.name.removesuffix(f".{APPLIANCE_TYPE}"),
        url=f"{'https' if tls else 'http'}://{host}:{info.port}{txt.get('path', '/v1')}",
        addresses=addresses,
        port=info.port or 0,
        tls=tls,
        api_key_required=txt.get("auth", "key") != "none",
        version=txt.get("version", "?"),
        fingerprint=txt.get("fp") or None,
        properties=txt,
    )


class NameCollector(ServiceListener):
    """The instance names a browser currently sees (goodbyes remove them)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.lock = threading.Lock()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        with self.lock:
            self.names.add(name)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.add_service(zc, type_, name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        with self.lock:
            self.names.discard(name)


def discover(timeout_s: float = 3.0) -> list[DiscoveredBox]:
    """Browse the LAN for `timeout_s` seconds; every appliance that answered, sorted by name."""
    zeroconf = Zeroconf(interfaces=InterfaceChoice.All)
    try:
        collector = NameCollector()
        browser = ServiceBrowser(zeroconf, APPLIANCE_TYPE, listener=collector)
        time.sleep(timeout_s)
        browser.cancel()
        with collector.lock:
            names = sorted(collector.names)
        boxes = []
        for name in names:
            info = zeroconf.get_service_info(APPLIANCE_TYPE, name, timeout=1500)
            if info is not None and info.port:
                boxes.append(box_from_info(info))
        return boxes
    finally:
        zeroconf.close()
