"""Where a model runs: the device manager's ranked placements joined with the fit planner.

May import devices (placement rules), planner, records, config. The daemon hands
`place_model` to the engine manager, which stays free of both: it only receives the answer
(device, layers to offload, slots) with the reason, and shows the reason to the administrator.
"""

from __future__ import annotations

from appliance.config import Config
from appliance.devices.placement import plan as rank_placements
from appliance.engine.manager import EnginePlacement
from appliance.planner import PlanOptions, plan_model
from appliance.records import (
    Accelerator,
    DeviceKind,
    FitKind,
    ModelFormat,
    ModelInfo,
    RuntimeReport,
)

ALL_LAYERS = -1
"""llama.cpp's "offload every layer" (n_gpu_layers < 0)."""


def place_model(
    info: ModelInfo, devices: list[Accelerator], runtimes: RuntimeReport, config: Config
) -> EnginePlacement:
    """The best way to run `info` here, falling back to the CPU with the reason why."""
    cpu = next((d for d in devices if d.kind == DeviceKind.CPU), None)
    cpu_id = cpu.id if cpu else "cpu0"
    slots = config.engine.slots
    candidates = [
        p
        for p in rank_placements(devices, runtimes)
        if p.engine == "llama.cpp" and info.format == ModelFormat.GGUF
    ]
    best = candidates[0] if candidates else None
    if best is None or best.device_id == cpu_id:
        why = best.reason if best else "no accelerator placement is possible"
        return EnginePlacement(cpu_id, "CPU", 0, slots, why)
    if info.shape is None:
        # Imported before shapes were recorded: offload everything and let llama.cpp decide.
        return EnginePlacement(best.device_id, best.backend, ALL_LAYERS, slots or 1, best.reason)
    options = PlanOptions(context_length=config.engine.context_length or 4096, parallel=slots or 1)
    fit = next(
        f for f in plan_model(info, devices, options).devices if f.device_id == best.device_id
    )
    arithmetic = "; ".join(fit.arithmetic)
    if fit.verdict == FitKind.FITS:
        chosen = slots or max(1, fit.parallel_slots)
        return EnginePlacement(
            best.device_id, best.backend, ALL_LAYERS, chosen, f"{best.reason}. {arithmetic}"
        )
    if fit.verdict == FitKind.PARTIAL and fit.gpu_layers > 0:
        return EnginePlacement(
            best.device_id, best.backend, fit.gpu_layers, slots or 1,
            f"{best.reason}; partial offload of {fit.gpu_layers} layers. {arithmetic}",
        )  # fmt: skip
    return EnginePlacement(
        cpu_id, "CPU", 0, slots, f"{best.device_id} cannot hold it ({fit.verdict}): {arithmetic}"
    )
