"""Hooks and logs: the lifecycle hooks that ran (event, exit code, output) and a live tail of
the daemon's log with a level filter."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, RichLog, Static

from appliance.api.admin.protocol import HookRunInfo, LogLine
from appliance.client import calls
from appliance.ui.format import clock_s
from appliance.ui.screens.base import ConsoleScreen
from appliance.ui.widgets.modals import TextModal

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_STYLE = {"WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red", "DEBUG": "dim"}


def hook_output(run: HookRunInfo) -> str:
    ended = "timed out and was killed" if run.timed_out else f"exit code {run.exit_code}"
    return (
        f"{run.event}/{run.name}: {ended} after {run.duration_s:.2f} s\n\n"
        f"--- stdout (end) ---\n{run.stdout_tail or '(empty)'}\n\n"
        f"--- stderr (end) ---\n{run.stderr_tail or '(empty)'}"
    )


class LogsScreen(ConsoleScreen):
    MODE = "logs"
    REFRESH_S = 1.0
    BINDINGS = [
        Binding("f", "next_level", "Level", id="logs.level",
                tooltip="Show DEBUG, INFO, WARNING or ERROR and above"),
        Binding("r", "refresh", "Refresh", id="logs.refresh", tooltip="Ask the daemon now"),
    ]  # fmt: skip
    PALETTE = [("Change the log level shown", "DEBUG, INFO, WARNING, ERROR", "next_level")]

    def __init__(self) -> None:
        super().__init__()
        self.level = "INFO"
        self.after = 0
        self.runs: list[HookRunInfo] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("Hook runs (Enter shows the output)", classes="section-title")
        yield DataTable(id="hooks", cursor_type="row", zebra_stripes=True)
        yield Static("", id="log-title", classes="section-title")
        yield RichLog(id="log", max_lines=2000, wrap=True, markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#hooks", DataTable).add_columns(
            "time", "event", "hook", "result", "duration"
        )
        self._title()

    def _title(self) -> None:
        self.query_one("#log-title", Static).update(f"Daemon log, {self.level} and above (f)")

    def action_refresh(self) -> None:
        self._refresh()

    @work(exclusive=True, group="logs")
    async def _refresh(self) -> None:
        runs = await self.poll(calls.hook_runs())
        lines = await self.poll(calls.logs(self.after, self.level, 500))
        if runs is not None and runs != self.runs:
            self._show_runs(runs)
        if lines:
            self._append(lines)

    def _show_runs(self, runs: list[HookRunInfo]) -> None:
        self.runs = runs
        table = self.query_one("#hooks", DataTable)
        table.clear()
        for index, run in enumerate(runs):
            result = "timed out" if run.timed_out else ("ok" if run.ok else f"exit {run.exit_code}")
            table.add_row(clock_s(run.started_at), run.event, run.name, result,
                          f"{run.duration_s:.2f} s", key=str(index))  # fmt: skip
        if not runs:
            table.add_row("-", "no hook has run since the daemon started", "", "", "")

    def _append(self, lines: list[LogLine]) -> None:
        log = self.query_one("#log", RichLog)
        for line in lines:
            text = f"{clock_s(line.timestamp)} {line.level:7} {line.logger}: {line.message}"
            log.write(Text(text, style=_STYLE.get(line.level, "")))
        self.after = lines[-1].seq

    def action_next_level(self) -> None:
        self.level = LEVELS[(LEVELS.index(self.level) + 1) % len(LEVELS)]
        self._title()
        # Start the tail again from the daemon's whole buffer at the new level.
        self.after = 0
        self.query_one("#log", RichLog).clear()
        self.action_refresh()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if self.runs and key is not None and key.isdigit() and int(key) < len(self.runs):
            run = self.runs[int(key)]
            self.app.push_screen(TextModal(f"Hook {run.event}/{run.name}", hook_output(run)))
