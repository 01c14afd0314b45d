"""DeviceCard: one accelerator or CPU with its live figures and sparklines of the recent history."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from appliance.records import Accelerator, Telemetry
from appliance.ui.format import or_dash


def _gib(mib: float | None) -> str:
    return "-" if mib is None else f"{mib / 1024:.1f}"


class DeviceCard(Vertical):
    DEFAULT_CSS = """
    DeviceCard { height: auto; margin-bottom: 1; }
    DeviceCard .device-title { text-style: bold; }
    DeviceCard Horizontal { height: 1; }
    DeviceCard .metric { width: 24; }
    DeviceCard Sparkline { width: 1fr; height: 1; }
    DeviceCard .device-extra { color: $text-muted; }
    """

    def __init__(self, device: Accelerator) -> None:
        super().__init__(id=f"device-{device.id}", classes="device-card")
        self.device = device

    def compose(self) -> ComposeResult:
        yield Static("", classes="device-title", markup=False)
        with Horizontal():
            yield Label("util -", classes="metric util")
            yield Sparkline([], summary_function=max, classes="util-history")
        with Horizontal():
            yield Label("mem -", classes="metric mem")
            yield Sparkline([], summary_function=max, classes="mem-history")
        yield Static("", classes="device-extra", markup=False)

    def show(self, device: Accelerator, latest: Telemetry | None, history: list[Telemetry]) -> None:
        self.device = device
        usable = "usable" if device.usable else f"NOT usable: {device.reason}"
        self.query_one(".device-title", Static).update(f"{device.id}  {device.name}  ({usable})")
        sample = latest or Telemetry(device_id=device.id, timestamp=0)
        util = or_dash(None if sample.utilization_pct is None else round(sample.utilization_pct))
        self.query_one(".util", Label).update(f"util {util}%")
        total = sample.memory_total_mib or device.memory_total_mib or None
        self.query_one(".mem", Label).update(
            f"mem {_gib(sample.memory_used_mib)}/{_gib(total)} GiB"
        )
        self.query_one(".util-history", Sparkline).data = [
            s.utilization_pct or 0.0 for s in history
        ]
        self.query_one(".mem-history", Sparkline).data = [
            float(s.memory_used_mib or 0) for s in history
        ]
        extra = [
            f"temp {or_dash(sample.temperature_c, ' °C')}",
            f"power {or_dash(sample.power_w, ' W')}"
            + (f" / {sample.power_limit_w:.0f} W" if sample.power_limit_w else ""),
        ]
        if sample.health:
            extra.append(f"health {sample.health}")
        if not sample.available and sample.error:
            extra.append(f"telemetry: {sample.error}")
        self.query_one(".device-extra", Static).update("   ".join(extra))
