"""Dashboard: service state, where to point clients, the box's memory and disk, each device with
live telemetry and sparklines, the loaded models, the upstream servers (health, latency, requests
in flight; shown once one is configured) and alerts. Refreshes every few seconds."""

from __future__ import annotations

import asyncio

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.api.admin.protocol import DaemonStatus, HostStats
from appliance.client import calls
from appliance.records import DeviceTelemetry, LoadedModel, UpstreamState
from appliance.ui.alerts import alerts, runtime_details, runtime_line
from appliance.ui.format import duration, human_bytes
from appliance.ui.screens.base import ConsoleScreen
from appliance.ui.widgets.device_card import DeviceCard
from appliance.ui.widgets.modals import TextModal


def _service_text(status: DaemonStatus) -> str:
    key = "API key required" if status.api_key_required else "no API key needed"
    lines = [
        f"[b green]● running[/]  appliance {status.version}, up {duration(status.uptime_s)}",
        f"LAN API: [b]{status.api_url}[/b]  ({key})",
    ]
    fingerprint = status.tls_fingerprint
    tls = f"{status.tls_mode}, SHA-256 {fingerprint}" if fingerprint else "off"
    lines.append(f"TLS: {escape(tls)}   mDNS: {escape(status.discovery)}")
    lines.append(
        f"Default model: {status.default_model or 'none installed'}   "
        f"installed: {status.models_installed}"
    )
    return "\n".join(lines)


def _host_text(host: HostStats) -> str:
    used = host.memory_total_bytes - host.memory_available_bytes
    disk = host.disk
    addresses = ", ".join(
        f"{n.name} {n.addresses[0]}" for n in host.network if n.up and n.name != "lo"
    )
    return (
        f"RAM {human_bytes(used)} / {human_bytes(host.memory_total_bytes)}   "
        f"disk {human_bytes(disk.free_bytes)} free of {human_bytes(disk.total_bytes)}   "
        f"load {host.load_average[0]:.2f}\n"
        f"{host.hostname} ({host.cpu_count} CPUs): {addresses or 'no network'}"
    )


def _model_row(model: LoadedModel) -> tuple[str, ...]:
    state = str(model.state)
    if model.state == "loading" and model.load_progress is not None:
        state = f"loading {model.load_progress:.0%}"
    return (
        model.name, state, f"{model.device_id}/{model.backend}", str(model.slots or "-"),
        str(model.context_length or "-"), "yes" if model.pinned else "", model.error,
    )  # fmt: skip


def _upstream_row(upstream: UpstreamState) -> tuple[str, ...]:
    latency = f"{upstream.latency_ms:.0f} ms" if upstream.latency_ms is not None else "-"
    return (
        upstream.name, upstream.url, str(upstream.health), latency,
        f"{upstream.in_flight}/{upstream.max_streams}", upstream.error,
    )  # fmt: skip


class DashboardScreen(ConsoleScreen):
    MODE = "dashboard"
    REFRESH_S = 2.0  # the app's --refresh overrides it
    BINDINGS = [
        Binding("w", "why_variant", "Why this CPU variant", id="dashboard.variant",
                tooltip="The self-test's verdict on each llama.cpp CPU variant"),
        Binding("r", "refresh", "Refresh", id="dashboard.refresh", tooltip="Ask the daemon now"),
    ]  # fmt: skip
    PALETTE = [("Why this CPU variant", "The llama.cpp CPU variant self-test", "why_variant")]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="dashboard-body"):
            yield Static("Connecting to the daemon…", id="service")
            yield Static("", id="runtime", markup=False)
            yield Static("", id="host", markup=False)
            yield Static("Alerts", classes="section-title")
            yield Static("none", id="alerts", markup=False)
            yield Static("Loaded models", classes="section-title")
            yield DataTable(id="loaded", cursor_type="row", zebra_stripes=True)
            yield Static("Upstream servers", classes="section-title", id="upstreams-title")
            yield DataTable(id="upstreams", cursor_type="row", zebra_stripes=True)
            yield Static("Devices", classes="section-title")
            yield VerticalScroll(id="devices")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#loaded", DataTable).add_columns(
            "model", "state", "device", "slots", "context", "pinned", "note"
        )
        self.query_one("#upstreams", DataTable).add_columns(
            "model", "url", "health", "latency", "in flight", "note"
        )
        self._show_upstreams([])

    def action_refresh(self) -> None:
        self._refresh()

    def action_why_variant(self) -> None:
        status = self.console.status
        report = status.runtime if status else None
        self.app.push_screen(TextModal("llama.cpp CPU variant", runtime_details(report)))

    @work(exclusive=True, group="dashboard")
    async def _refresh(self) -> None:
        status = await self.poll(calls.status())
        if status is None:
            return
        telemetry, host, hooks, errors = await asyncio.gather(
            self.poll(calls.device_telemetry(history=True)),
            self.poll(calls.host()),
            self.poll(calls.hook_runs()),
            self.poll(calls.logs(level="ERROR", limit=10)),
        )
        if self.taken_down:
            return
        self.query_one("#service", Static).update(_service_text(status))
        self.query_one("#runtime", Static).update(runtime_line(status.runtime))
        if host:
            self.query_one("#host", Static).update(_host_text(host))
        found = alerts(status, telemetry, hooks or [], errors or [])
        self.query_one("#alerts", Static).update("\n".join(found) if found else "none")
        self.query_one("#alerts").set_class(bool(found), "alerting")
        await self._show_devices(status, telemetry)
        table = self.query_one("#loaded", DataTable)
        table.clear()
        for model in status.models_loaded:
            table.add_row(*_model_row(model), key=model.name)
        self._show_upstreams(status.upstreams)

    def _show_upstreams(self, upstreams: list[UpstreamState]) -> None:
        """The section appears only on boxes that forward to upstream servers."""
        table = self.query_one("#upstreams", DataTable)
        table.clear()
        for upstream in upstreams:
            table.add_row(*_upstream_row(upstream), key=f"{upstream.name} {upstream.url}")
        for widget in (table, self.query_one("#upstreams-title")):
            widget.display = bool(upstreams)

    async def _show_devices(self, status: DaemonStatus, telemetry: DeviceTelemetry | None) -> None:
        box = self.query_one("#devices", VerticalScroll)
        cards = {card.device.id: card for card in box.query(DeviceCard)}
        for gone in set(cards) - {d.id for d in status.devices}:
            await cards.pop(gone).remove()
        for device in status.devices:
            if device.id not in cards:
                cards[device.id] = DeviceCard(device)
                await box.mount(cards[device.id])
            latest = telemetry.latest.get(device.id) if telemetry else None
            history = telemetry.history.get(device.id, []) if telemetry else []
            cards[device.id].show(device, latest, history)
