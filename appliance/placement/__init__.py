"""Where and how a model runs, decided once: device, runtime build and CPU variant, offloaded
layers, context, slots and threads, each with its reason. The worker obeys the answer exactly.

May import records, config, errors and the store's catalog types (through `fit`); never the
API, engine, devices or UI: the daemon passes in the device inventory and the runtime report.

    rules.py   devices x runtimes -> ranked (engine, device) placements with reasons
    fit.py     the fit planner: memory arithmetic per device, in words
    rpc.py     the same arithmetic over this box plus its llama.cpp RPC peers (`rpc.peers`)
"""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config import Config
from appliance.errors import EngineError
from appliance.placement.fit import PlanOptions, plan_model
from appliance.placement.rpc import RpcPeer, plan_pool, rpc_peers
from appliance.placement.rules import rank_placements
from appliance.records import (
    Accelerator,
    DeviceKind,
    FitKind,
    ModelFormat,
    ModelInfo,
    ModelPlacement,
    RuntimeReport,
)

__all__ = [
    "ALL_LAYERS",
    "NoPlacement",
    "choose_default_model",
    "default_threads",
    "place_model",
    "place_onnx_model",
    "rank_placements",
]

ALL_LAYERS = -1
"""llama.cpp's "offload every layer" (n_gpu_layers < 0)."""
FALLBACK_SLOTS = 4
"""Slots for a model whose shape was never recorded (imported by an old version)."""
ONNX_SLOTS = 4
"""Slots for an ONNX model: the fit planner reads GGUF shapes only."""


class NoPlacement(EngineError):
    """The model cannot run anywhere on this box (no runtime, or too big); the message says why."""

    code = "no_placement"
    http_status = 503
    title = "Model cannot be placed"


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def context_for(info: ModelInfo, config: Config) -> int:
    """Tokens per slot: the configured length (0: the trained one), never beyond the trained."""
    wanted = config.engine.context_length
    trained = info.context_length or 0
    if wanted == 0:
        return trained or 4096
    return min(wanted, trained) if trained else wanted


def place_model(
    info: ModelInfo, devices: list[Accelerator], runtimes: RuntimeReport, config: Config
) -> ModelPlacement:
    """The best way to run `info` here, falling back to the CPU with the reason why; with
    `rpc.peers`, a model that does not fit fully on a local accelerator is spread over the
    peers too (when the pool holds more of it than this box alone)."""
    peers = rpc_peers(config)
    if not peers:
        return _place_here(info, devices, runtimes, config)
    try:
        here, why_not = _place_here(info, devices, runtimes, config), ""
    except NoPlacement as error:
        if info.format != ModelFormat.GGUF or not runtimes.llama_cpp_dir:
            raise
        here, why_not = None, error.message
    if here is not None and here.gpu_layers == ALL_LAYERS and here.backend != "CPU":
        return here  # fits fully on a local accelerator: the network would only slow it down
    return _place_with_peers(info, devices, runtimes, config, peers, here, why_not)


def _place_with_peers(
    info: ModelInfo, devices: list[Accelerator], runtimes: RuntimeReport, config: Config,
    peers: list[RpcPeer], here: ModelPlacement | None, why_not: str,
) -> ModelPlacement:  # fmt: skip
    endpoints = ", ".join(p.endpoint for p in peers)
    library = Path(runtimes.llama_cpp_dir or "") / "libggml-rpc.so"
    if not library.is_file():
        note = (
            f"rpc.peers lists {endpoints}, but the {runtimes.llama_cpp_runtime} runtime in "
            f"{runtimes.llama_cpp_dir} was built without GGML_RPC (no libggml-rpc.so); build it "
            "with `build-llama-runtime.sh --rpc` to use the peers (docs/scale-out.md)"
        )
        if here is None:
            raise NoPlacement(f"{why_not}; {note}")
        return here.model_copy(update={"reason": f"{here.reason}; {note}"})
    if info.shape is None:
        raise NoPlacement(
            f"{info.name} has no recorded shape, so its layers cannot be planned over the RPC "
            "peers; import it again"
        )
    local = None
    if here is not None and here.backend != "CPU":
        device = next(d for d in devices if d.id == here.device_id)
        local = (device.id, device.memory_total_mib)
    context = context_for(info, config)
    opts = PlanOptions(context_length=context, parallel=config.engine.slots or 1)
    pool = plan_pool(info.shape, peers, local, context, opts)
    local_layers = 0 if here is None or here.backend == "CPU" else here.gpu_layers
    if not pool.full and pool.layers <= local_layers:
        note = f"the RPC peers would not hold more of it: {'; '.join(pool.lines)}"
        if here is None:
            raise NoPlacement(f"{why_not}; {note}")
        return here.model_copy(update={"reason": f"{here.reason}; {note}"})
    base = here.model_dump() if here is not None else {
        "device_id": next((d.id for d in devices if d.kind == DeviceKind.CPU), "cpu0"),
        "backend": "CPU", "context_length": context, "slots": 1,
        "threads": config.engine.threads or default_threads(), **_runtime(runtimes),
    }  # fmt: skip
    spread = "all" if pool.full else f"{pool.layers} of {info.shape.block_count}"
    return ModelPlacement(**{
        **base,
        "gpu_layers": ALL_LAYERS if pool.full else pool.layers,
        "slots": config.engine.slots or 1,
        "backend_libs": [*base["backend_libs"], str(library)],
        "rpc_servers": [p.endpoint for p in peers],
        "reason": f"{spread} layers spread over the llama.cpp RPC peers {endpoints}"
        + (f" and {local[0]}" if local else "") + f". {'; '.join(pool.lines)}"
        + (f" (on this box alone: {why_not or base.get('reason', '')})"),
    })  # fmt: skip


def _place_here(
    info: ModelInfo, devices: list[Accelerator], runtimes: RuntimeReport, config: Config
) -> ModelPlacement:
    """The best way to run `info` on this box's own devices."""
    if info.format == ModelFormat.ONNX:
        return place_onnx_model(info, devices, runtimes, config)
    if info.format != ModelFormat.GGUF:
        raise NoPlacement(
            f"{info.name} is an {info.format.value.upper()} model; this version serves GGUF "
            "models only (through llama.cpp)"
        )
    runtime = _runtime(runtimes)
    cpu = next((d for d in devices if d.kind == DeviceKind.CPU), None)
    cpu_id = cpu.id if cpu else "cpu0"
    context = context_for(info, config)
    threads = config.engine.threads or default_threads()
    candidates = [p for p in rank_placements(devices, runtimes) if p.engine == "llama.cpp"]
    best = candidates[0] if candidates else None
    device = next((d for d in devices if best and d.id == best.device_id), None)
    base = {"context_length": context, "threads": threads, **runtime}
    if best is None or device is None or best.device_id == cpu_id:
        why = best.reason if best else "no accelerator placement is possible"
        return _on_cpu(info, devices, config, base, cpu_id, why)
    if info.shape is None:
        # Imported before shapes were recorded: offload everything and let llama.cpp decide.
        return ModelPlacement(
            device_id=best.device_id, backend=best.backend, gpu_layers=ALL_LAYERS,
            slots=config.engine.slots or 1, reason=best.reason,
            **_device_runtime(device, best.backend, runtimes, base),
        )  # fmt: skip
    options = PlanOptions(context_length=context, parallel=config.engine.slots or 1)
    fit = next(f for f in plan_model(info, devices, options).devices if f.device_id == device.id)
    arithmetic = "; ".join(fit.arithmetic)
    if fit.verdict == FitKind.FITS:
        return ModelPlacement(
            device_id=device.id, backend=best.backend, gpu_layers=ALL_LAYERS,
            slots=config.engine.slots or max(1, fit.parallel_slots),
            reason=f"{best.reason}. {arithmetic}",
            **_device_runtime(device, best.backend, runtimes, base),
        )  # fmt: skip
    if fit.verdict == FitKind.PARTIAL and fit.gpu_layers > 0:
        return ModelPlacement(
            device_id=device.id, backend=best.backend, gpu_layers=fit.gpu_layers,
            slots=config.engine.slots or 1,
            reason=f"{best.reason}; partial offload of {fit.gpu_layers} layers. {arithmetic}",
            **_device_runtime(device, best.backend, runtimes, base),
        )  # fmt: skip
    why = f"{device.id} cannot hold it ({fit.verdict}): {arithmetic}"
    return _on_cpu(info, devices, config, base, cpu_id, why)


def place_onnx_model(
    info: ModelInfo, devices: list[Accelerator], runtimes: RuntimeReport, config: Config
) -> ModelPlacement:
    """An ONNX model goes to onnxruntime, never to llama.cpp: on the best execution provider
    the runtime probe listed (CANN on Ascend, CUDA on NVIDIA, else the CPU), with the reason."""
    candidates = [p for p in rank_placements(devices, runtimes) if p.engine == "onnxruntime"]
    if not candidates:
        found = ", ".join(runtimes.onnxruntime_providers) or "none"
        raise NoPlacement(
            f"{info.name} is an ONNX model, served by onnxruntime, but no execution provider "
            f"can run it here (onnxruntime {runtimes.onnxruntime_version or 'not installed'}; "
            f"providers: {found}); install onnxruntime, or import the model as GGUF"
        )
    best = candidates[0]
    device = next((d for d in devices if d.id == best.device_id), None)
    on_device = device is not None and device.kind != DeviceKind.CPU
    slots = config.engine.slots or ONNX_SLOTS
    sized = (
        f"{slots} slots (engine.slots)"
        if config.engine.slots
        else f"{slots} slots (no memory plan for ONNX models yet; set engine.slots to change)"
    )
    return ModelPlacement(
        engine="onnxruntime",
        device_id=best.device_id,
        backend=best.backend,
        context_length=context_for(info, config),
        slots=slots,
        threads=config.engine.threads or default_threads(),
        # The placed device is made the only visible one, so it is device 0 to the provider.
        provider_options={"device_id": "0"} if on_device else {},
        env=_visibility(device) if on_device and device is not None else {},
        reason=f"{best.reason}; {sized}",
    )


def _runtime(runtimes: RuntimeReport) -> dict[str, object]:
    choice = runtimes.cpu_variant
    if not runtimes.llama_cpp_dir or choice is None or not choice.variant:
        problems = "; ".join(runtimes.notes) or "no llama.cpp runtime was found"
        raise NoPlacement(f"llama.cpp cannot run on this box: {problems}")
    return {
        "runtime": runtimes.llama_cpp_runtime or "",
        "runtime_dir": runtimes.llama_cpp_dir,
        "cpu_variant": choice.variant,
        "backend_libs": [choice.path],
    }


def _on_cpu(
    info: ModelInfo, devices: list[Accelerator], config: Config, base: dict[str, object],
    cpu_id: str, why: str,
) -> ModelPlacement:  # fmt: skip
    variant = f"CPU variant {base['cpu_variant']} (self-tested)"
    if info.shape is None:
        return ModelPlacement(
            device_id=cpu_id, backend="CPU", slots=config.engine.slots or FALLBACK_SLOTS,
            reason=f"{why}; {variant}; no recorded shape, so {FALLBACK_SLOTS} slots "
            "(import the model again to size them from memory)",
            **base,
        )  # type: ignore[arg-type]  # fmt: skip
    options = PlanOptions(
        context_length=int(base["context_length"]),  # type: ignore[call-overload]
        parallel=config.engine.slots or 1,
    )
    fits = [f for f in plan_model(info, devices, options).devices if f.device_id == cpu_id]
    if fits and fits[0].verdict == FitKind.NO_FIT:
        raise NoPlacement(
            f"{info.name} does not fit in this box's memory: {'; '.join(fits[0].arithmetic)}"
        )
    slots = config.engine.slots or (max(1, fits[0].parallel_slots) if fits else 1)
    arithmetic = f" {'; '.join(fits[0].arithmetic)}" if fits else ""
    return ModelPlacement(
        device_id=cpu_id, backend="CPU", slots=slots, reason=f"{why}; {variant}.{arithmetic}",
        **base,
    )  # type: ignore[arg-type]  # fmt: skip


def _device_runtime(
    device: Accelerator, backend: str, runtimes: RuntimeReport, base: dict[str, object]
) -> dict[str, object]:
    """The base runtime plus the device's backend library and its visibility for the worker."""
    library = next(
        (lib for lib in runtimes.llama_cpp_accelerator_libs
         if Path(lib).name == f"libggml-{backend.lower()}.so"),
        None,
    )  # fmt: skip
    if library is None:
        raise NoPlacement(
            f"{device.id} was placed on {backend}, but the {runtimes.llama_cpp_runtime} runtime "
            f"in {runtimes.llama_cpp_dir} has no libggml-{backend.lower()}.so"
        )
    libs = [*base["backend_libs"], library]  # type: ignore[misc]
    return {**base, "backend_libs": libs, "env": _visibility(device)}


def _visibility(device: Accelerator) -> dict[str, str]:
    """Make the placed device the only one the worker's runtime sees (so llama.cpp cannot
    spread the model over every GPU of a multi-GPU box)."""
    if device.kind == DeviceKind.NVIDIA:
        # The UUID, not the index: CUDA numbers GPUs fastest-first by default, NVML by PCI bus.
        uuid = str(device.details.get("uuid") or "")
        return {"CUDA_VISIBLE_DEVICES": uuid or str(device.details.get("index", 0))}
    if device.kind == DeviceKind.ASCEND:
        chips = device.details.get("chips") or []
        ids = [str(chip["logical_id"]) for chip in chips if isinstance(chip, dict)]  # type: ignore[union-attr]
        return {"ASCEND_RT_VISIBLE_DEVICES": ",".join(ids) or "0"}
    return {}


def choose_default_model(
    installed: list[ModelInfo], devices: list[Accelerator], config: Config
) -> str | None:
    """The configured default, else the largest installed GGUF model that the fit planner says
    runs here (on an accelerator or the CPU) with at least one slot of the configured context.
    ONNX models are never chosen by themselves (no memory plan for them): name one in
    `default_model` to make it the default."""
    if config.default_model:
        return config.default_model
    runnable = []
    for info in installed:
        if info.format != ModelFormat.GGUF:
            continue
        if info.shape is None:
            runnable.append(info)  # cannot be planned: loading will tell
            continue
        options = PlanOptions(context_length=context_for(info, config), parallel=1)
        verdicts = [f.verdict for f in plan_model(info, devices, options).devices]
        if any(v in (FitKind.FITS, FitKind.PARTIAL, FitKind.CPU_ONLY) for v in verdicts):
            runnable.append(info)
    best = max(runnable, key=lambda m: m.size_bytes, default=None)
    return best.name if best else None
