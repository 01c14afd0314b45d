"""EngineManager: which models are loaded, in which worker processes, and their health.

The daemon's single owner of workers. The API asks it to generate with a model; it loads on
demand (one load per model, shared by concurrent callers), admits requests up to the worker's
slots plus a bounded queue (then `Overloaded` → 429), keeps at most `max_loaded` models (the
least recently used unpinned one goes first), unloads idle models after `keep_alive_s`, and
supervises each worker: a dead worker fails its in-flight requests at once (the client sees
EOF), a hung one (no heartbeat) is killed, and both are restarted with back-off until they
crash too often. May import engine.messages, records, config, errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from appliance.config import Config
from appliance.engine.client import WorkerProcess
from appliance.engine.messages import Delta, Done, Embeddings, Load, Stats, Submit
from appliance.errors import (
    ApplianceError,
    Conflict,
    EngineDead,
    EngineError,
    ModelLoading,
    NoRoom,
    Overloaded,
    ShuttingDown,
)
from appliance.records import LoadedModel, ModelInfo, ModelPlacement, ModelState

log = logging.getLogger("appliance.engine")

EventListener = Callable[[str, dict[str, object]], Awaitable[object]]
"""Told about lifecycle events (`model-loaded`, `model-unloaded`); the daemon runs hooks."""


Placer = Callable[[ModelInfo], Awaitable[ModelPlacement]]
"""Decides where a model runs (`appliance.placement.place_model` in the daemon); raising an
ApplianceError fails the load with that message."""

CRASH_WINDOW_S = 300.0
CRASHES_BEFORE_GIVING_UP = 5
HOUSEKEEPING_INTERVAL_S = 5.0


@dataclass
class _Model:
    info: ModelInfo
    record: LoadedModel
    worker: WorkerProcess | None = None
    loading: asyncio.Task[None] | None = None
    supervisor: asyncio.Task[None] | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    crashes: list[float] = field(default_factory=list)
    reserved: bool = False
    """Passed the max_loaded check and is loading: it holds a place like a loaded model."""
    room_error: NoRoom | None = None
    """Why the last load did not start (no room), told to requests as a 503."""

    @property
    def holds_room(self) -> bool:
        loading = self.reserved and self.loading is not None and not self.loading.done()
        return self.worker is not None or loading

    keep_alive_s: float | None = None
    """A client's `keep_alive` (Ollama API): idle seconds before unloading; < 0 never."""

    last_heartbeat: float = field(default_factory=time.monotonic)
    """When the worker last answered a ping (or became ready); the systemd watchdog reads it."""

    @property
    def ready(self) -> bool:
        return (
            self.record.state == ModelState.READY and self.worker is not None and self.worker.alive
        )


class EngineManager:
    def __init__(
        self,
        config: Config,
        *,
        placer: Placer,
        listener: EventListener | None = None,
    ) -> None:
        self.config = config
        self.listener = listener
        self.placer = placer
        self._models: dict[str, _Model] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._housekeeping: asyncio.Task[None] | None = None
        self._room = asyncio.Lock()
        """Held while a load checks max_loaded and takes its place."""
        self._draining: str | None = None
        """Why the daemon is stopping, from SIGTERM on: no new loads, and a request that was
        waiting for a load that then ends unready is told that, not the load's error."""
        self._load_waiters: set[asyncio.Future[None]] = set()
        """Requests waiting for a model load; the end of the drain fails them."""

    # --- state for the API and the TUI ---------------------------------------------------

    def loaded(self) -> list[LoadedModel]:
        return [model.record.model_copy() for model in self._models.values()]

    def state_of(self, name: str) -> LoadedModel | None:
        model = self._models.get(name)
        return model.record.model_copy() if model else None

    def stale_heartbeats(self, max_age_s: float) -> dict[str, float]:
        """Ready models whose worker has not answered a ping for `max_age_s`: name → age (s).

        Empty while supervision works: the supervisor kills and restarts a worker silent for
        `engine.hang_timeout_s`, so a heartbeat older than that means supervision itself stalled.
        """
        now = time.monotonic()
        return {
            name: now - model.last_heartbeat
            for name, model in self._models.items()
            if model.ready and now - model.last_heartbeat > max_age_s
        }

    async def stats(self, name: str) -> Stats:
        model = self._models.get(name)
        if model is None or not model.ready or model.worker is None:
            raise EngineError(f"model {name!r} is not loaded")
        return await model.worker.stats()

    # --- loading ---------------------------------------------------------------------------

    def start_loading(self, info: ModelInfo, *, pinned: bool = False) -> asyncio.Task[None]:
        """Begin loading a model in the background, or join the load already running."""
        model = self._models.get(info.name)
        if model and model.loading and not model.loading.done():
            model.record.pinned |= pinned
            return model.loading
        if model and model.ready and model.loading:
            model.record.pinned |= pinned
            return model.loading  # the finished load that made it ready
        if self._draining:
            raise ShuttingDown(self._draining)
        if model is None:
            model = self._models[info.name] = _Model(info=info, record=self._record(info))
        model.record.pinned |= pinned
        model.record.state = ModelState.LOADING
        model.record.error = ""
        model.record.draft_model = ""
        model.record.load_progress = 0.0
        model.room_error = None
        model.loading = asyncio.create_task(self._load(model), name=f"load-{info.name}")
        return model.loading

    async def load(self, info: ModelInfo, *, explicit: bool = False) -> LoadedModel:
        """Load and wait; an explicit (administrator's) load may evict pinned models."""
        if info.name not in self._models or not self._models[info.name].ready:
            async with self._room:
                await self._make_room(info.name, evict_pinned=explicit)
        await asyncio.shield(self.start_loading(info, pinned=explicit))
        return self._ready_model(info.name).record.model_copy()

    def _record(self, info: ModelInfo) -> LoadedModel:
        return LoadedModel(
            name=info.name, state=ModelState.LOADING, device_id="cpu0", engine="llama.cpp"
        )

    async def _load(self, model: _Model) -> None:
        """Load a model; any failure leaves it `failed` with the reason, never `loading`."""
        try:
            await self._load_worker(model)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not isinstance(error, ApplianceError):
                log.exception("loading %s failed", model.info.name)
            message = error.message if isinstance(error, ApplianceError) else str(error)
            self._fail_load(model, message or type(error).__name__)
            model.room_error = error if isinstance(error, NoRoom) else None

    async def _load_worker(self, model: _Model) -> None:
        # Checked and reserved in one step: this model counts as loaded from here on, so
        # concurrent loads of other models see it and max_loaded holds.
        async with self._room:
            await self._make_room(model.info.name, evict_pinned=False)
            model.reserved = True
        try:
            placement = await self.placer(model.info)
        except ApplianceError as error:
            self._fail_load(model, error.message)
            return
        except Exception as error:  # a placement bug is reported, never a silent CPU fallback
            log.exception("placement of %s failed", model.info.name)
            self._fail_load(model, f"placement failed: {error}")
            return
        model.record.device_id = placement.device_id
        model.record.backend = placement.backend
        model.record.placement = placement.reason
        model.record.cpu_variant = placement.cpu_variant
        model.record.engine = placement.engine
        worker = WorkerProcess(
            model.info.name,
            on_progress=self._progress_setter(model),
            send_timeout_s=self.config.engine.hang_timeout_s,
        )
        started = time.monotonic()
        log.info(
            "loading %s on %s/%s (%s GPU layers, %s threads, %s slots x %s tokens, CPU variant "
            "%s): %s",
            model.info.name, placement.device_id, placement.backend, placement.gpu_layers,
            placement.threads, placement.slots, placement.context_length, placement.cpu_variant,
            placement.reason,
        )  # fmt: skip
        request = Load(
            model_path=model.info.path,
            context_length=placement.context_length,
            threads=placement.threads,
            gpu_layers=placement.gpu_layers,
            slots=placement.slots,
            batch_tokens=self.config.engine.batch_tokens,
            runtime_dir=placement.runtime_dir,
            backend_libs=placement.backend_libs,
            oom_score_adj=self.config.engine.worker_oom_score_adj,
            engine=placement.engine,
            provider=placement.backend if placement.engine == "onnxruntime" else "",
            provider_options=placement.provider_options,
            rpc_servers=placement.rpc_servers,
            kv_cache_type=self.config.engine.kv_cache_type,
            # Drafting verifies guesses with several positions of one sequence in a step: the
            # llama.cpp runtime's batches do that; the ONNX runtime's do not.
            draft_tokens=(
                self.config.engine.speculative_tokens if placement.engine == "llama.cpp" else 0
            ),
            draft_model_path=placement.draft_model_path,
            draft_gpu_layers=placement.draft_gpu_layers,
            draft_required=placement.draft_required,
            stream_interval_ms=self.config.engine.stream_interval_ms,
        )
        try:
            ready = await worker.start(
                request, timeout_s=self.config.engine.load_timeout_s, env=placement.env
            )
        except EngineError as error:
            self._fail_load(model, error.message)
            return
        model.worker = worker
        record = model.record
        record.state = ModelState.READY
        record.pid = worker.pid
        record.context_length = ready.context_length
        record.slots = ready.slots
        record.draft_model = placement.draft_model if ready.draft_model_loaded else ""
        record.loaded_at = time.time()
        record.load_seconds = round(time.monotonic() - started, 3)
        record.load_progress = 1.0
        model.last_used = model.last_heartbeat = time.monotonic()
        log.info(
            "%s ready in %.1f s: %d slots × %d tokens (pid %s)",
            model.info.name, record.load_seconds, ready.slots, ready.context_length, worker.pid,
        )  # fmt: skip
        self._emit("model-loaded", {"model": model.info.name, "pid": worker.pid})
        model.supervisor = asyncio.create_task(
            self._supervise(model, worker), name=f"supervise-{model.info.name}"
        )

    @staticmethod
    def _fail_load(model: _Model, message: str) -> None:
        log.error("%s", message)
        model.reserved = False
        model.record.state = ModelState.FAILED
        model.record.error = message
        model.record.load_progress = None

    @staticmethod
    def _progress_setter(model: _Model) -> Callable[[float], None]:
        def set_progress(fraction: float) -> None:
            model.record.load_progress = round(fraction, 3)

        return set_progress

    async def _make_room(self, name: str, *, evict_pinned: bool) -> None:
        """Unload models until `name` fits under max_loaded; NoRoom when none may go.

        Callers hold `self._room`, so two loads cannot both see the last free place.
        """
        others = [m for n, m in self._models.items() if n != name and m.holds_room]
        while len(others) >= self.config.engine.max_loaded:
            idle = [
                m
                for m in others
                if m.worker is not None
                and m.in_flight == 0
                and (evict_pinned or not m.record.pinned)
            ]
            if not idle:
                loading = sum(m.worker is None for m in others)
                held = f"{len(others)} model(s) are loaded (pinned or busy)" + (
                    f" or loading ({loading})" if loading else ""
                )
                raise NoRoom(
                    f"cannot load {name!r} now: engine.max_loaded is "
                    f"{self.config.engine.max_loaded} and {held}; retry shortly, raise "
                    "engine.max_loaded or unload one (`appliance models unload`)"
                )
            victim = min(idle, key=lambda m: m.last_used)
            log.info("unloading %s to make room for %s", victim.info.name, name)
            await self.unload(victim.info.name)
            others.remove(victim)

    def _ready_model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None or not model.ready:
            error = model.record.error if model else ""
            raise EngineDead(error or f"model {name!r} is not available")
        return model

    # --- serving ----------------------------------------------------------------------------

    def _ready_or_raise(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is not None and not model.ready and model.room_error is not None:
            raise model.room_error  # 503 with Retry-After: nothing is wrong with the model
        return self._ready_model(name)

    async def ensure_ready(self, info: ModelInfo, wait: bool = True) -> WorkerProcess:
        model = self._models.get(info.name)
        if model is None or not model.ready:
            task = self.start_loading(info)
            if not wait:
                raise ModelLoading(f"model {info.name!r} is loading; try again shortly")
            # A restart after a crash waits out its back-off, then starts a new load task.
            while True:
                await self._wait_for_load(task)
                model = self._models.get(info.name)
                if model is None or model.loading in (None, task) or model.loading.done():
                    break
                task = model.loading
            model = self._models.get(info.name)
            if self._draining and (model is None or not model.ready):
                raise ShuttingDown(self._draining)
        model = self._ready_or_raise(info.name)
        model.last_used = time.monotonic()
        assert model.worker is not None
        return model.worker

    async def _wait_for_load(self, task: asyncio.Task[None]) -> None:
        """Wait for a load without owning it (other requests wait too); the end of the drain
        (`abort_all`) ends the wait with ShuttingDown."""
        aborted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._load_waiters.add(aborted)
        try:
            await asyncio.wait({task, aborted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._load_waiters.discard(aborted)
        if aborted.done():
            aborted.result()  # raises the ShuttingDown set by abort_all

    def drain(self, reason: str) -> None:
        """SIGTERM: start no new loads; requests waiting for one are ended at the drain's end
        (`abort_all`), or as soon as the load ends unready (e.g. its self-test was stopped)."""
        self._draining = reason

    def set_pinned(self, name: str, pinned: bool) -> LoadedModel:
        """Pin a loaded model (never unloaded when idle nor to make room, until unpinned or
        unloaded) or unpin it; pins last until the daemon stops."""
        model = self._models.get(name)
        if model is None or model.record.state in (ModelState.FAILED,):
            raise Conflict(
                f"model {name!r} is not loaded; load it first (a load by the administrator pins it)"
            )
        model.record.pinned = pinned
        if not pinned:
            model.last_used = time.monotonic()  # its keep-alive counts from now, not from before
        return model.record.model_copy()

    def admit(self, info: ModelInfo) -> None:
        """Raise Overloaded when the model's slots and queue are all taken."""
        model = self._models.get(info.name)
        if model is None or model.record.slots is None:
            return
        capacity = model.record.slots + self.config.engine.queue_size
        if model.in_flight >= capacity:
            raise Overloaded(
                f"model {info.name!r} is serving {model.in_flight} requests, its limit; "
                "retry shortly",
                retry_after_s=2,
            )

    async def generate(self, info: ModelInfo, submit: Submit) -> AsyncIterator[Delta | Done]:
        worker = await self.ensure_ready(info)
        self.admit(info)
        model = self._models[info.name]
        model.in_flight += 1
        try:
            async for message in worker.generate(submit):
                yield message
        finally:
            model.in_flight -= 1
            model.last_used = time.monotonic()

    async def embed(self, info: ModelInfo, inputs: list[str], normalize: bool) -> Embeddings:
        worker = await self.ensure_ready(info)
        self.admit(info)
        model = self._models[info.name]
        model.in_flight += 1
        try:
            # No deadline of its own: the work is bounded by limits.max_embedding_inputs and the
            # context, it runs between decode steps, and a hung worker fails the heartbeat.
            return await worker.embed(inputs, normalize, timeout_s=None)
        finally:
            model.in_flight -= 1
            model.last_used = time.monotonic()

    # --- supervision ------------------------------------------------------------------------

    async def _supervise(self, model: _Model, worker: WorkerProcess) -> None:
        assert worker.process is not None
        hang = self.config.engine.hang_timeout_s
        interval = min(5.0, hang / 4)
        exited = asyncio.ensure_future(worker.process.wait())
        while not exited.done():
            done, _ = await asyncio.wait({exited}, timeout=interval)
            if done or model.worker is not worker:
                break
            if await worker.ping(timeout_s=hang):
                model.last_heartbeat = time.monotonic()
            elif worker.alive:
                log.error("worker for %s (pid %s) is hung; killing it", model.info.name, worker.pid)
                worker.exit_reason = f"hung: no heartbeat for {hang:.0f} s"
                worker.process.kill()
        await exited
        if model.worker is not worker or model.record.state != ModelState.READY:
            return  # unloaded on purpose
        await asyncio.sleep(0)  # let the reader record the exit reason first
        reason = worker.exit_reason or f"exit code {worker.process.returncode}"
        log.error("worker for %s (pid %s) died: %s", model.info.name, worker.pid, reason)
        model.worker = None
        model.reserved = False  # a restart checks max_loaded again
        model.record.state = ModelState.FAILED
        model.record.pid = None
        self._schedule_restart(model, reason)

    def _schedule_restart(self, model: _Model, reason: str) -> None:
        now = time.monotonic()
        model.crashes = [t for t in model.crashes if now - t < CRASH_WINDOW_S] + [now]
        if len(model.crashes) >= CRASHES_BEFORE_GIVING_UP:
            model.record.error = (
                f"worker process died ({reason}); it crashed {len(model.crashes)} times in "
                f"{CRASH_WINDOW_S / 60:.0f} minutes, so it is not restarted automatically: "
                "check the log, then `appliance models load` it"
            )
            return
        delay = min(30.0, 0.5 * 2 ** (len(model.crashes) - 1))
        model.record.error = f"worker process died ({reason}); restarting in {delay:.1f} s"

        async def restart() -> None:
            await asyncio.sleep(delay)
            if self._models.get(model.info.name) is model and model.record.state == "failed":
                model.record.restarts += 1
                model.loading = None  # this task; start_loading must not join it
                self.start_loading(model.info)

        model.loading = self._spawn(restart())

    def fail_models_on_device(self, device_id: str, reason: str) -> list[str]:
        """Stop every model placed on a lost device and mark it failed (the device manager calls
        this). Its worker is killed at once: it holds handles on a device that is gone and would
        only hang or crash; its requests end with the error below."""
        failed = []
        for model in self._models.values():
            if model.record.device_id == device_id and model.record.state != ModelState.STOPPED:
                model.record.state = ModelState.FAILED
                model.record.error = f"device {device_id} was lost: {reason}"
                model.record.pid = None
                worker, model.worker = model.worker, None
                if worker is not None:
                    worker.exit_reason = model.record.error
                    if worker.alive and worker.process is not None:
                        worker.process.kill()  # no grace: its device calls may never return
                    self._spawn(worker.stop())
                failed.append(model.info.name)
        return failed

    # --- unloading and idle housekeeping ----------------------------------------------------

    async def unload(self, name: str) -> bool:
        model = self._models.pop(name, None)
        if model is None:
            return False
        model.record.state = ModelState.STOPPED  # so the supervisor does not report a crash
        for task in (model.loading, model.supervisor):
            if task and not task.done() and task is not asyncio.current_task():
                task.cancel()
        if model.worker:
            await model.worker.stop()
            self._emit("model-unloaded", {"model": name})
        return True

    def start(self) -> None:
        """Start the idle-unload loop (the daemon calls this once its loop runs)."""
        self._housekeeping = asyncio.create_task(self._unload_idle_forever(), name="keep-alive")

    async def _unload_idle_forever(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            await self.unload_idle()

    def keep_alive(self, name: str, seconds: float) -> None:
        """A client's keep_alive for an unpinned model (0: unload once idle; < 0: never).

        Pinned models (the default, administrator loads) ignore it: one LAN client must not
        unload the model everyone shares.
        """
        model = self._models.get(name)
        if model is not None and not model.record.pinned:
            model.keep_alive_s = seconds

    def _idle_limit(self, model: _Model) -> float | None:
        """Idle seconds before `model` is unloaded; None: never."""
        if model.record.pinned:
            return None
        if model.keep_alive_s is not None:
            return None if model.keep_alive_s < 0 else model.keep_alive_s
        configured = self.config.engine.keep_alive_s
        return None if configured <= 0 else configured

    def expires_at(self, name: str) -> float | None:
        """Wall-clock time an idle model will be unloaded at; None when it is kept."""
        model = self._models.get(name)
        limit = self._idle_limit(model) if model else None
        if model is None or limit is None:
            return None
        idle_for = time.monotonic() - model.last_used if model.in_flight == 0 else 0.0
        return time.time() + max(0.0, limit - idle_for)

    async def unload_idle(self) -> list[str]:
        now = time.monotonic()
        idle = []
        for name, model in self._models.items():
            limit = self._idle_limit(model)
            if limit is None or not model.ready or model.in_flight:
                continue
            if now - model.last_used >= limit:
                idle.append(name)
        for name in idle:
            log.info("unloading %s: idle past its keep-alive", name)
            await self.unload(name)
        return idle

    def abort_all(self, reason: str) -> int:
        """End every generation in progress, and every request waiting for a model load, with
        `ShuttingDown(reason)`; how many were ended."""
        self._draining = reason
        waiting = [waiter for waiter in self._load_waiters if not waiter.done()]
        for waiter in waiting:
            waiter.set_exception(ShuttingDown(reason))
        return len(waiting) + sum(
            model.worker.abort_streams(reason)
            for model in self._models.values()
            if model.worker is not None
        )

    async def shutdown(self) -> None:
        if self._housekeeping:
            self._housekeeping.cancel()
        for name in list(self._models):
            await self.unload(name)

    # --- helpers ----------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[object]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task  # type: ignore[return-value]

    def _emit(self, event: str, payload: dict[str, object]) -> None:
        if self.listener is not None:
            self._spawn(self.listener(event, payload))


__all__ = ["EngineManager", "EventListener", "Placer"]
