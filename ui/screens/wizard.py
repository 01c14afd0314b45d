"""First-boot wizard: shown when the daemon reports it was never set up.

Five steps, each on the admin API the rest of the console uses: what hardware was found; which
installed model to serve (with the planner's verdict; `i` imports one); the first admin key
(shown once); who may reach the box (this box only or the LAN) and TLS; then the choices are
saved through the daemon, the model answers a test prompt, and the box is marked set up (a
restart is offered when a saved setting needs one). `s` skips the wizard for good; Esc closes
it until the console is opened again.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, Label, Select, Static

from appliance.api.admin.protocol import DaemonStatus, SetupDone
from appliance.client import AsyncAdminClient, calls
from appliance.errors import ApplianceError
from appliance.ui.format import human_bytes
from appliance.ui.screens.import_model import ImportScreen
from appliance.ui.screens.key_forms import SecretScreen
from appliance.ui.widgets.modals import ConfirmModal, ErrorModal

STEPS = ["hardware", "model", "key", "exposure", "test"]
TITLES = {
    "hardware": "1/5 Hardware found",
    "model": "2/5 The model to serve",
    "key": "3/5 The first admin key",
    "exposure": "4/5 Who may reach the box",
    "test": "5/5 Saving and a test prompt",
}


def hardware_text(status: DaemonStatus) -> str:
    lines = []
    for device in status.devices:
        memory = human_bytes(device.memory_total_mib * 2**20) if device.memory_total_mib else "-"
        usable = "" if device.usable else f"  (not usable: {device.reason})"
        lines.append(f"{device.id}: {device.name}, {memory}{usable}")
    runtime = status.runtime
    if runtime is not None and runtime.cpu_variant is not None:
        choice = runtime.cpu_variant
        lines.append(f"llama.cpp CPU variant: {choice.variant or 'none'} ({choice.reason})")
    lines.append("")
    lines.append("Enter or n: next · b: back · s: skip the wizard (set up by hand) · Esc: later")
    return "\n".join(lines)


def port_of(listen: str) -> str:
    return listen.rpartition(":")[2] or "8080"


class WizardScreen(Screen[None]):
    BINDINGS = [
        # Not a priority binding: a Select's list needs Enter to choose (then n goes on).
        Binding("enter,n", "next", "Next", id="wizard.next"),
        Binding("b", "back", "Back", id="wizard.back"),
        Binding("i", "import_model", "Import", id="wizard.import"),
        Binding("c", "create_key", "Create key", id="wizard.key"),
        Binding("s", "skip", "Skip wizard", id="wizard.skip"),
        Binding("escape", "later", "Later", id="wizard.later"),
    ]

    def __init__(self, status: DaemonStatus, client: AsyncAdminClient) -> None:
        super().__init__()
        self.status = status
        self.client = client
        self.step = 0
        self.model: str | None = status.default_model
        self.key_created: str | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="wizard"):
            yield Static("", id="wizard-title")
            with ContentSwitcher(initial="hardware", id="wizard-steps"):
                yield Static(hardware_text(self.status), id="hardware", markup=False)
                with Vertical(id="model"):
                    yield DataTable(id="wizard-models", cursor_type="row")
                    yield Static("", id="wizard-model-note", markup=False)
                yield Static("", id="key", markup=False)
                with Vertical(id="exposure"):
                    port = port_of(self.status.listen)
                    yield Label("The LAN API answers:")
                    yield Select(
                        [(f"every computer on the LAN (0.0.0.0:{port})", f"0.0.0.0:{port}"),
                         (f"this box only (127.0.0.1:{port})", f"127.0.0.1:{port}")],
                        value=f"0.0.0.0:{port}", allow_blank=False, id="wizard-listen",
                    )  # fmt: skip
                    yield Label("HTTPS:")
                    yield Select(
                        [("off (plain HTTP)", "off"),
                         ("on, with a certificate made for this box", "self-signed")],
                        value=self.status.tls_mode if self.status.tls_mode != "files" else "off",
                        allow_blank=False, id="wizard-tls",
                    )  # fmt: skip
                    yield Static("Tab: the other choice · Enter or ↓ opens a list · n: next",
                                 markup=False)  # fmt: skip
                yield Static("", id="test", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#wizard-models", DataTable).add_columns("model", "size", "fit here")
        self._show()
        self._load_models()

    def _show(self) -> None:
        name = STEPS[self.step]
        self.query_one("#wizard-title", Static).update(f"[b]First start: {TITLES[name]}[/b]")
        self.query_one(ContentSwitcher).current = name
        if name == "model":
            self.query_one("#wizard-models", DataTable).focus()
        elif name == "key":
            self.query_one("#key", Static).update(self._key_text())
        elif name == "exposure":
            self.query_one("#wizard-listen", Select).focus()

    def _key_text(self) -> str:
        if self.key_created:
            return (
                f"Created the admin key {self.key_created} (shown once; the daemon keeps its "
                "hash). Enter: next."
            )
        return (
            "An admin-scoped key manages the box over the LAN (with HTTPS on) and also chats.\n"
            "c: create it now (shown once) · Enter: next without one (on the box, the admin\n"
            "socket needs no key: this console uses it)."
        )

    @work(exclusive=True, group="wizard-models")
    async def _load_models(self) -> None:
        try:
            models = await self.client.run(calls.models())
        except ApplianceError as error:
            self.app.push_screen(ErrorModal(error.title, error.message))
            return
        table = self.query_one("#wizard-models", DataTable)
        table.clear()
        for model in models:
            verdict = "-"
            if model.shape is not None:
                try:
                    plan = await self.client.run(calls.fit_model(model.name))
                    best = plan.best
                    verdict = f"{best.verdict} {best.device_id}" if best else "-"
                except ApplianceError as error:
                    verdict = error.message
            table.add_row(model.name, human_bytes(model.size_bytes), verdict, key=model.name)
        if self.model in [m.name for m in models]:
            table.move_cursor(row=[m.name for m in models].index(self.model))
        note = (
            "Enter picks the selected model as the one to serve · i: import another"
            if models
            else "No model is installed yet: i imports one (a file, a USB stick or a LAN URL)."
        )
        self.query_one("#wizard-model-note", Static).update(note)

    def on_data_table_row_selected(self) -> None:
        self.action_next()  # Enter on the model list picks the model and goes on

    def _selected_model(self) -> str | None:
        table = self.query_one("#wizard-models", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    # --- keys ------------------------------------------------------------------------------

    def action_next(self) -> None:
        if self.busy:
            return
        name = STEPS[self.step]
        if name == "model":
            self.model = self._selected_model()
            if self.model is None:
                self.notify("import a model first (i)", title="Setup", severity="warning")
                return
        if name == "test":
            self._finish()
            return
        self.step += 1
        self._show()
        if STEPS[self.step] == "test":
            self._save_and_test()

    def action_back(self) -> None:
        if self.step > 0 and not self.busy:
            self.step -= 1
            self._show()

    def action_import_model(self) -> None:
        if STEPS[self.step] != "model":
            return

        def imported(name: str | None) -> None:
            if name:
                self.model = name
                self._load_models()

        self.app.push_screen(ImportScreen(), imported)

    def action_create_key(self) -> None:
        if STEPS[self.step] == "key" and not self.key_created:
            self._create_key()

    @work(exclusive=True, group="wizard-key")
    async def _create_key(self) -> None:
        try:
            created = await self.client.run(calls.create_key("first-admin", "admin", None))
        except ApplianceError as error:
            self.app.push_screen(ErrorModal(error.title, error.message))
            return
        self.key_created = created.info.name
        self.query_one("#key", Static).update(self._key_text())
        self.app.push_screen(SecretScreen(created))

    def action_skip(self) -> None:
        question = "Skip the wizard? The console will not offer it again."

        def answered(yes: bool | None) -> None:
            if yes:
                self._mark_done(SetupDone(skipped=True), restart=[])

        self.app.push_screen(ConfirmModal("Skip setup", question), answered)

    def action_later(self) -> None:
        self.dismiss()

    # --- the work --------------------------------------------------------------------------

    def _choices(self) -> dict[str, Any]:
        return {
            "default_model": self.model,
            "api.listen": str(self.query_one("#wizard-listen", Select).value),
            "tls.mode": str(self.query_one("#wizard-tls", Select).value),
        }

    @work(exclusive=True, group="wizard-test")
    async def _save_and_test(self) -> None:
        out = self.query_one("#test", Static)
        self.busy = True
        self.restart_needed: list[str] = []
        try:
            out.update("Saving the choices (the daemon checks them)...")
            saved = await self.client.run(calls.change_settings(self._choices()))
            self.restart_needed = saved.restart_required
            lines = [f"Saved to {saved.saved_to}."]
            for key in saved.overridden_by_environment:
                lines.append(f"Note: an APPLIANCE_* variable in the daemon's environment wins "
                             f"over {key}.")  # fmt: skip
            lines.append(f"Asking {self.model} a test question (it may load first)...")
            out.update("\n".join(lines))
            answer = await self.client.run(calls.golden_prompt(self.model))
        except ApplianceError as error:
            out.update(f"{error.message}\n\nb: back to change the choices · Esc: later")
            return
        finally:
            self.busy = False
        verdict = "a sane answer" if answer.sane else f"a doubtful answer: {answer.problem}"
        lines += [
            "",
            f"Q: {answer.prompt}",
            f"A: {answer.answer.strip()}",
            f"({answer.completion_tokens} tokens in {answer.seconds:.1f} s: {verdict})",
            "",
            "Enter: finish" + (" (a restart applies the saved settings)" if self.restart_needed
                               else ""),
        ]  # fmt: skip
        out.update("\n".join(lines))
        self.tested = True

    def _finish(self) -> None:
        if not getattr(self, "tested", False):
            return
        summary = {**self._choices(), "admin_key": self.key_created}
        self._mark_done(SetupDone(summary=summary), restart=self.restart_needed)

    @work(exclusive=True, group="wizard-done")
    async def _mark_done(self, done: SetupDone, restart: list[str]) -> None:
        try:
            await self.client.run(calls.setup_done(done))
        except ApplianceError as error:
            self.app.push_screen(ErrorModal(error.title, error.message))
            return
        if not restart:
            self.notify("the box is set up" if not done.skipped else "setup skipped")
            self.dismiss()
            return
        question = (
            f"The box is set up. {', '.join(restart)} takes effect when the daemon restarts. "
            "Restart now?"
        )
        self.app.push_screen(ConfirmModal("Restart needed", question), self._restart_then_close)

    def _restart_then_close(self, yes: bool | None) -> None:
        if yes:
            self._restart()
        else:
            self.dismiss()

    @work(exclusive=True, group="wizard-done")
    async def _restart(self) -> None:
        try:
            answer = await self.client.run(calls.restart())
            self.notify(answer.message, title="Setup")
        except ApplianceError as error:
            self.app.push_screen(ErrorModal(error.title, error.message))
        self.dismiss()
