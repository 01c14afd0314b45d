"""Models: the installed models (size, quantization, architecture, loaded or not, fit on this
box) and the catalog with verdicts; import, load, unload, delete (confirmed) and details."""

from __future__ import annotations

import asyncio

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from appliance.client import calls
from appliance.records import CatalogVerdict, FitPlan, LoadedModel, ModelInfo
from appliance.ui.format import human_bytes
from appliance.ui.screens.base import ConsoleScreen
from appliance.ui.screens.import_model import ImportScreen
from appliance.ui.screens.model_details import catalog_details, model_details
from appliance.ui.widgets.modals import ConfirmModal, TextModal


def _state(loaded: LoadedModel | None) -> str:
    if loaded is None:
        return "-"
    if loaded.state == "loading" and loaded.load_progress is not None:
        return f"loading {loaded.load_progress:.0%}"
    return f"{loaded.state} (pinned)" if loaded.pinned else str(loaded.state)


def _fit(plan: FitPlan | None) -> str:
    best = plan.best if plan else None
    return f"{_verdict(best.verdict)} {best.device_id}" if best else "-"


def _verdict(verdict: str) -> str:
    return {"fits": "fits", "partial": "partial", "cpu_only": "CPU only"}.get(verdict, "no fit")


class ModelsScreen(ConsoleScreen):
    MODE = "models"
    REFRESH_S = 2.0
    BINDINGS = [
        Binding("t", "other_tab", "Catalog", id="models.tab",
                tooltip="Switch between the installed models and the catalog"),
        Binding("i", "import_model", "Import", id="models.import",
                tooltip="Import from a path, a USB stick or a LAN URL"),
        Binding("l", "load", "Load", id="models.load", tooltip="Load the selected model"),
        Binding("u", "unload", "Unload", id="models.unload", tooltip="Stop its worker"),
        Binding("p", "pin", "Pin", id="models.pin",
                tooltip="Keep the loaded model in memory, or let it go (toggles)"),
        Binding("x,delete", "delete", "Delete", id="models.delete",
                tooltip="Remove the model's files (asks first)"),
        Binding("enter", "details", "Details", id="models.details", show=False,
                tooltip="Metadata, template, fit and live counters"),
        Binding("r", "refresh", "Refresh", id="models.refresh", show=False,
                tooltip="Ask the daemon now"),
    ]  # fmt: skip
    PALETTE = [
        ("Import a model", "From a path, a USB stick or a LAN URL", "import_model"),
        ("Load the selected model", "Start its worker", "load"),
        ("Unload the selected model", "Stop its worker", "unload"),
        ("Pin or unpin the selected model", "Pinned: stays loaded when idle", "pin"),
        ("Delete the selected model", "Remove its files (asks first)", "delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.installed: dict[str, ModelInfo] = {}
        self.loaded: dict[str, LoadedModel] = {}
        self.fits: dict[str, FitPlan | None] = {}
        self.catalog: dict[str, CatalogVerdict] = {}

    def compose_body(self) -> ComposeResult:
        with TabbedContent(id="models-tabs"):
            with TabPane("Installed", id="installed-tab"):
                yield DataTable(id="installed", cursor_type="row", zebra_stripes=True)
                yield Static("", id="models-note", markup=False)
            with TabPane("Catalog", id="catalog-tab"):
                yield DataTable(id="catalog", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#installed", DataTable).add_columns(
            "model", "arch", "quant", "size", "state", "fit here"
        )
        self.query_one("#catalog", DataTable).add_columns(
            "catalog build", "quant", "size", "verdict", "device", "max ctx"
        )

    def action_refresh(self) -> None:
        self._refresh()

    @work(exclusive=True, group="models")
    async def _refresh(self) -> None:
        models, status = await asyncio.gather(self.poll(calls.models()), self.poll(calls.status()))
        if models is None or status is None:
            return
        self.installed = {m.name: m for m in models}
        self.loaded = {m.name: m for m in status.models_loaded}
        missing = [m for m in models if m.name not in self.fits]
        plans = await asyncio.gather(*(self._fit_of(m) for m in missing))
        self.fits.update({m.name: plan for m, plan in zip(missing, plans, strict=True)})
        self._fill_installed()
        if not self.catalog:
            entries = await self.poll(calls.catalog())
            self.catalog = {e.id: e for e in entries or []}
            self._fill_catalog()

    async def _fit_of(self, model: ModelInfo) -> FitPlan | None:
        if model.shape is None:
            return None  # ONNX or an old import: the planner has nothing to go on
        return await self.poll(calls.fit_model(model.name))

    def _fill_installed(self) -> None:
        table = self.query_one("#installed", DataTable)
        selected = self._selected_name()
        table.clear()
        for model in self.installed.values():
            table.add_row(
                model.name, model.architecture or "-", model.quantization or "-",
                human_bytes(model.size_bytes), _state(self.loaded.get(model.name)),
                _fit(self.fits.get(model.name)), key=model.name,
            )  # fmt: skip
        if selected in self.installed:
            table.move_cursor(row=table.get_row_index(selected))
        note = "" if self.installed else "No model installed: press i to import one."
        self.query_one("#models-note", Static).update(note)

    def _fill_catalog(self) -> None:
        table = self.query_one("#catalog", DataTable)
        table.clear()
        for entry in self.catalog.values():
            table.add_row(
                entry.name, entry.quantization, human_bytes(entry.size_bytes),
                _verdict(entry.verdict), entry.device_id or "-", str(entry.max_context or "-"),
                key=entry.id,
            )  # fmt: skip

    def _selected_name(self) -> str | None:
        table = self.query_one("#installed", DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _on_catalog(self) -> bool:
        return self.query_one(TabbedContent).active == "catalog-tab"

    def _selected_catalog(self) -> CatalogVerdict | None:
        table = self.query_one("#catalog", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.catalog.get(key or "")

    def action_other_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "installed-tab" if self._on_catalog() else "catalog-tab"
        table = "#catalog" if self._on_catalog() else "#installed"
        self.query_one(table, DataTable).focus()

    def action_import_model(self) -> None:
        entry = self._selected_catalog() if self._on_catalog() else None
        source = entry.url if entry else ""
        self.app.push_screen(ImportScreen(source, entry.id if entry else ""), self._imported)

    def _imported(self, name: str | None) -> None:
        if name:
            self.notify(f"{name} is installed", title="Import")
            self.action_refresh()

    def action_load(self) -> None:
        if name := self._selected_name():
            self.run_worker(self._load(name), group=f"load-{name}", exclusive=True)

    async def _load(self, name: str) -> None:
        loaded = await self.act(calls.load_model(name))
        if loaded is not None:
            self.notify(f"{name} {loaded.state} on {loaded.device_id}", title="Load")
        self.action_refresh()

    def action_pin(self) -> None:
        name = self._selected_name()
        loaded = self.loaded.get(name or "")
        if name is None or loaded is None:
            self.notify("load the model first (a load from here pins it)", title="Pin")
            return
        self._pin(name, not loaded.pinned)

    @work(exclusive=True, group="models-action")
    async def _pin(self, name: str, pinned: bool) -> None:
        record = await self.act(calls.pin_model(name, pinned))
        if record is not None:
            self.notify(f"{name} {'pinned' if record.pinned else 'unpinned'}", title="Pin")
        self.action_refresh()

    def action_unload(self) -> None:
        if name := self._selected_name():
            self._unload(name)

    @work(exclusive=True, group="models-action")
    async def _unload(self, name: str) -> None:
        result = await self.act(calls.unload_model(name))
        if result is not None:
            self.notify(f"{name} unloaded" if result.unloaded else f"{name} was not loaded")
        self.action_refresh()

    def action_delete(self) -> None:
        name = self._selected_name()
        if name is None:
            return
        question = f"Delete {name}? Its files are removed from the box (unloaded first)."

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(name)

        self.app.push_screen(ConfirmModal("Delete model", question), answered)

    @work(exclusive=True, group="models-action")
    async def _delete(self, name: str) -> None:
        if await self.act(calls.remove_model(name)) is not None:
            self.notify(f"{name} deleted", title="Delete")
            self.fits.pop(name, None)
        self.action_refresh()

    def action_details(self) -> None:
        if self._on_catalog():
            if entry := self._selected_catalog():
                self.app.push_screen(TextModal(entry.name, catalog_details(entry)))
        elif name := self._selected_name():
            self._details(name)

    @work(exclusive=True, group="models-details")
    async def _details(self, name: str) -> None:
        info = await self.act(calls.show_model(name))
        if info is None:
            return
        loaded = self.loaded.get(name)
        stats = None
        if loaded is not None and loaded.state == "ready":
            stats = await self.act(calls.model_stats(name))
        text = model_details(info, loaded, self.fits.get(name), stats)
        self.app.push_screen(TextModal(f"Model {name}", text))

    def on_data_table_row_selected(self) -> None:
        self.action_details()
