"""ImportScreen: import a model from a path on the box, a USB stick (offered when one is
mounted) or a LAN URL, with a progress bar; the daemon does the copying and checking."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from appliance.client import calls
from appliance.errors import ApplianceError
from appliance.records import RemovableMount
from appliance.ui.format import human_bytes


class ImportScreen(ModalScreen[str | None]):
    """Dismissed with the imported model's name, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="import.cancel", tooltip="Close")]

    def __init__(self, source: str = "", name: str = "") -> None:
        super().__init__(classes="modal")
        self.source = source
        self.model_name = name
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="import-dialog") as dialog:
            dialog.border_title = "Import a model"
            dialog.border_subtitle = "Enter imports · Esc closes"
            yield Label("GGUF file, ONNX folder or bundle on this box, or an http(s) URL:")
            yield Input(self.source, placeholder="/media/usb/model.gguf", id="import-source")
            yield Label("Name (optional):")
            yield Input(self.model_name, placeholder="from the file name", id="import-name")
            yield Static("", id="import-media-title", markup=False)
            yield OptionList(id="import-media")
            yield ProgressBar(id="import-progress", show_eta=False)
            yield Static("", id="import-state", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#import-media").display = False
        self.query_one("#import-progress").display = False
        self._scan_media()

    @work(exclusive=True, group="import-media")
    async def _scan_media(self) -> None:
        try:
            mounts = await self.app.client.run(calls.media())  # type: ignore[attr-defined]
        except ApplianceError:
            return  # offering USB files is a convenience; typing a path still works
        self._offer(mounts)

    def _offer(self, mounts: list[RemovableMount]) -> None:
        files = [f for mount in mounts for f in mount.files]
        if not files:
            return
        names = ", ".join(m.mount_point for m in mounts)
        self.query_one("#import-media-title", Static).update(f"On the USB stick ({names}):")
        options = self.query_one("#import-media", OptionList)
        for found in files:
            label = f"{found.path}  ({found.kind}, {human_bytes(found.size_bytes)})"
            options.add_option(Option(label, id=found.path))
        options.display = True

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#import-source", Input).value = event.option.id or ""
        self.query_one("#import-source", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        source = self.query_one("#import-source", Input).value.strip()
        if not source:
            self.query_one("#import-state", Static).update("type a path or URL first")
            return
        if not self.busy:
            self._import(source, self.query_one("#import-name", Input).value.strip() or None)

    @work(exclusive=True, group="import")
    async def _import(self, source: str, name: str | None) -> None:
        self.busy = True
        bar = self.query_one("#import-progress", ProgressBar)
        state = self.query_one("#import-state", Static)
        bar.display = True
        state.update(f"importing {source}…")
        try:
            async for line in self.app.client.import_model(source, name):  # type: ignore[attr-defined]
                if line.status == "done" and line.model is not None:
                    verb = "imported" if line.created else "already installed:"
                    state.update(f"{verb} {line.model.name}")
                    self.dismiss(line.model.name)
                    return
                bar.update(total=line.total_bytes or None, progress=line.completed_bytes)
                state.update(
                    f"{line.status} {human_bytes(line.completed_bytes)}"
                    f" of {human_bytes(line.total_bytes)}"
                )
        except ApplianceError as error:
            state.update("import failed")
            self.app.show_error(error)  # type: ignore[attr-defined]
        finally:
            self.busy = False

    def action_cancel(self) -> None:
        # Closing does not stop a running import: the daemon finishes it, the list shows it.
        self.dismiss(None)
