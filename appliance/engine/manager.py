"""EngineManager: which models are loaded, in which worker processes, and their state.

The daemon's single owner of workers. The API asks it for a ready worker by model; it loads
on demand (one load per model at a time, shared by concurrent callers), keeps at most
`max_loaded` models (least recently used goes first), and notices when a worker dies: the
model is marked failed with the reason, and the next request starts a fresh worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from appliance.config import Config
from appliance.engine.client import WorkerProcess
from appliance.engine.messages import Delta, Done, Load, Submit
from appliance.errors import EngineError, ModelLoading
from appliance.records import LoadedModel, ModelInfo, ModelState

log = logging.getLogger("appliance.engine")


@dataclass
class _Slot:
    info: ModelInfo
    record: LoadedModel
    worker: WorkerProcess | None = None
    loading: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    last_used: float = field(default_factory=time.monotonic)


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


EventListener = Callable[[str, dict[str, object]], Awaitable[object]]
"""Told about lifecycle events (`model-loaded`, `model-unloaded`); the daemon runs hooks."""


class EngineManager:
    def __init__(
        self, config: Config, *, max_loaded: int = 1, listener: EventListener | None = None
    ) -> None:
        self.config = config
        self.max_loaded = max_loaded
        self.listener = listener
        self._slots: dict[str, _Slot] = {}
        self._background: set[asyncio.Task[object]] = set()

    def _emit(self, event: str, payload: dict[str, object]) -> None:
        if self.listener is None:
            return
        task = asyncio.ensure_future(self.listener(event, payload))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def loaded(self) -> list[LoadedModel]:
        return [slot.record.model_copy() for slot in self._slots.values()]

    def state_of(self, name: str) -> LoadedModel | None:
        slot = self._slots.get(name)
        return slot.record.model_copy() if slot else None

    def start_loading(self, info: ModelInfo) -> asyncio.Task[None]:
        """Begin loading a model in the background (or join a load in progress)."""
        slot = self._slots.get(info.name)
        if slot and slot.loading and not slot.loading.done():
            return slot.loading
        if slot and slot.worker and slot.worker.alive and slot.record.state == ModelState.READY:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return asyncio.ensure_future(done)
        slot = self._slots[info.name] = _Slot(
            info=info,
            record=LoadedModel(
                name=info.name, state=ModelState.LOADING, device_id="cpu0", engine="llama.cpp"
            ),
        )
        slot.loading = asyncio.create_task(self._load(slot), name=f"load-{info.name}")
        return slot.loading

    async def ensure_ready(self, info: ModelInfo, wait: bool = True) -> WorkerProcess:
        slot = self._slots.get(info.name)
        if not (slot and slot.worker and slot.worker.alive and slot.record.state == "ready"):
            task = self.start_loading(info)
            if not wait:
                raise ModelLoading(f"model {info.name!r} is loading; try again shortly")
            await asyncio.shield(task)
            slot = self._slots[info.name]
        if slot.record.state != ModelState.READY or slot.worker is None:
            raise EngineError(slot.record.error or f"model {info.name!r} is not available")
        slot.last_used = time.monotonic()
        return slot.worker

    async def generate(self, info: ModelInfo, submit: Submit) -> AsyncIterator[Delta | Done]:
        worker = await self.ensure_ready(info)
        async for message in worker.generate(submit):
            yield message

    async def _load(self, slot: _Slot) -> None:
        await self._evict_for(slot.info.name)
        threads = self.config.engine.threads or default_threads()
        context = self.config.engine.context_length
        if slot.info.context_length and (context == 0 or context > slot.info.context_length):
            context = slot.info.context_length  # never ask for more than the model was trained on
        worker = WorkerProcess(slot.info.name)
        started = time.monotonic()
        log.info("loading model %s (%s threads, context %s)", slot.info.name, threads, context)
        try:
            ready = await worker.start(
                Load(model_path=slot.info.path, context_length=context, threads=threads),
                timeout_s=self.config.engine.load_timeout_s,
            )
        except EngineError as error:
            log.error("%s", error.message)
            slot.record.state = ModelState.FAILED
            slot.record.error = error.message
            return
        slot.worker = worker
        slot.record.state = ModelState.READY
        slot.record.pid = worker.pid
        slot.record.context_length = ready.context_length
        slot.record.loaded_at = time.time()
        slot.record.load_seconds = round(time.monotonic() - started, 3)
        log.info(
            "model %s ready in %.1f s (pid %s)", slot.info.name, ready.load_seconds, worker.pid
        )
        self._emit(
            "model-loaded", {"model": slot.info.name, "pid": worker.pid, "path": slot.info.path}
        )
        slot.watcher = asyncio.create_task(
            self._watch(slot, worker), name=f"watch-{slot.info.name}"
        )

    async def _watch(self, slot: _Slot, worker: WorkerProcess) -> None:
        assert worker.process is not None
        await worker.process.wait()
        if slot.worker is worker and slot.record.state == ModelState.READY:
            await asyncio.sleep(0)  # let the reader record the exit reason first
            reason = worker.exit_reason or f"exit code {worker.process.returncode}"
            log.error("worker for %s (pid %s) died: %s", slot.info.name, worker.pid, reason)
            slot.record.state = ModelState.FAILED
            slot.record.error = f"worker process died ({reason}); the next request restarts it"

    async def _evict_for(self, name: str) -> None:
        others = [s for n, s in self._slots.items() if n != name and s.worker is not None]
        others.sort(key=lambda s: s.last_used)
        while len(others) >= self.max_loaded:
            victim = others.pop(0)
            log.info("unloading %s to make room for %s", victim.info.name, name)
            await self.unload(victim.info.name)

    def fail_models_on_device(self, device_id: str, reason: str) -> list[str]:
        """Mark every model placed on a lost device failed (the device manager calls this)."""
        failed = []
        for slot in self._slots.values():
            if slot.record.device_id == device_id and slot.record.state != ModelState.STOPPED:
                slot.record.state = ModelState.FAILED
                slot.record.error = f"device {device_id} was lost: {reason}"
                failed.append(slot.info.name)
        return failed

    async def unload(self, name: str) -> bool:
        slot = self._slots.pop(name, None)
        if slot is None:
            return False
        if slot.loading and not slot.loading.done():
            slot.loading.cancel()
        slot.record.state = ModelState.STOPPED  # so the watcher does not report a crash
        if slot.worker:
            await slot.worker.stop()
            self._emit("model-unloaded", {"model": name})
        return True

    async def shutdown(self) -> None:
        for name in list(self._slots):
            await self.unload(name)
