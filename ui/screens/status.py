"""The status screen: where to point clients, what hardware the box has, which model runs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from appliance.api.admin.protocol import DaemonStatus


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f} GiB" if mib else "-"


class StatusScreen(Screen[None]):
    """Shows the last `DaemonStatus`, or why there is none."""

    BINDINGS = [("r", "app.refresh_status", "Refresh")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        with Vertical(id="status-body"):
            yield Static("Connecting to the daemon…", id="connection")
            yield Static("", id="summary")
            yield Static("Devices", classes="section-title")
            yield DataTable(id="devices", cursor_type="row", zebra_stripes=True)
            yield Static("Models", classes="section-title")
            yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#devices", DataTable).add_columns(
            "id", "kind", "name", "memory", "usable", "reason"
        )
        self.query_one("#models", DataTable).add_columns(
            "model", "state", "engine", "device", "slots", "context", "load time", "note"
        )

    def show_status(self, status: DaemonStatus) -> None:
        connection = self.query_one("#connection", Static)
        connection.update(f"Connected to the appliance daemon {status.version}")
        connection.set_class(False, "error")
        key = "API key required" if status.api_key_required else "no API key needed"
        tls = (
            f"TLS: {status.tls_mode}, SHA-256 {status.tls_fingerprint}\n"
            if status.tls_fingerprint
            else "TLS: off\n"
        )
        self.query_one("#summary", Static).update(
            f"LAN API: [b]{status.api_url}[/b]  ({key})\n{tls}"
            f"Default model: {status.default_model or 'none installed'}   "
            f"Installed models: {status.models_installed}   Up: {status.uptime_s:.0f} s"
        )
        devices = self.query_one("#devices", DataTable)
        devices.clear()
        for device in status.devices:
            devices.add_row(
                device.id, device.kind, device.name, _gib(device.memory_total_mib),
                "yes" if device.usable else "no", device.reason,
            )  # fmt: skip
        models = self.query_one("#models", DataTable)
        models.clear()
        for model in status.models_loaded:
            load_time = f"{model.load_seconds:.1f} s" if model.load_seconds else "-"
            state = str(model.state)
            if model.state == "loading" and model.load_progress is not None:
                state = f"loading {model.load_progress:.0%}"
            models.add_row(
                model.name, state, model.engine, model.device_id, str(model.slots or "-"),
                str(model.context_length or "-"), load_time, model.error,
            )  # fmt: skip
        if not status.models_loaded:
            models.add_row("(no model loaded)", "", "", "", "", "", "", "")

    def show_unreachable(self, message: str) -> None:
        connection = self.query_one("#connection", Static)
        connection.update(message)
        connection.set_class(True, "error")
        self.query_one("#summary", Static).update("")
        self.query_one("#devices", DataTable).clear()
        self.query_one("#models", DataTable).clear()
