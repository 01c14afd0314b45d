"""Placement rules: devices x runtimes -> a ranked list of (engine, device, reason).

May import records only: pure data in, data out, so every rule is a table-driven test.
Matching is data, not branching spread through the code (ARCHITECTURE.md): the rules below
are the one place that says which runtime backend serves which device kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.records import Accelerator, DeviceKind, Placement, RuntimeReport


@dataclass(frozen=True)
class _Rule:
    kind: DeviceKind
    llama_backend: str
    onnx_provider: str
    build_hint: str
    """What to install when llama.cpp lacks the backend."""


_RULES = (
    _Rule(
        DeviceKind.NVIDIA,
        "CUDA",
        "CUDAExecutionProvider",
        "install the CUDA build of the runtime (the ai-appliance-runtime-cuda package, or "
        "packaging/runtime/install-llama.sh PYTHON VERSION cuda)",
    ),
    _Rule(
        DeviceKind.ASCEND,
        "CANN",
        "CANNExecutionProvider",
        "install the CANN build of the runtime (the ai-appliance-runtime-cann package, or "
        "packaging/runtime/install-llama.sh PYTHON VERSION cann with the CANN toolkit)",
    ),
)
# Scores: accelerator llama.cpp > accelerator onnxruntime > CPU llama.cpp > CPU onnxruntime.
# More memory breaks ties between accelerators of one kind.
_SCORE = {"llama-acc": 300, "onnx-acc": 200, "llama-cpu": 100, "onnx-cpu": 50}


def rank_placements(devices: Sequence[Accelerator], runtimes: RuntimeReport) -> list[Placement]:
    """Every possible placement, best first; each carries the reason it was (or was not) better.

    A usable accelerator whose backend is missing adds its reason to the CPU placement, so the
    administrator reads why the model is on the CPU where the CPU is chosen.
    """
    placements: list[Placement] = []
    cpu_reasons: list[str] = []
    llama = set(runtimes.llama_cpp_backends) if runtimes.llama_cpp_version else set()
    providers = set(runtimes.onnxruntime_providers)
    for rule in _RULES:
        for device in (d for d in devices if d.kind == rule.kind and d.usable):
            tie = min(device.memory_total_mib // 1024, 99)
            if rule.llama_backend in llama:
                placements.append(
                    Placement(
                        engine="llama.cpp",
                        device_id=device.id,
                        backend=rule.llama_backend,
                        score=_SCORE["llama-acc"] + tie,
                        reason=(
                            f"{device.name}: llama.cpp was built with {rule.llama_backend}; "
                            "offload all layers that fit"
                        ),
                    )
                )
            else:
                cpu_reasons.append(
                    f"{device.name} ({device.id}) is idle: llama.cpp was built without "
                    f"{rule.llama_backend}; {rule.build_hint}"
                )
            if rule.onnx_provider in providers:
                placements.append(
                    Placement(
                        engine="onnxruntime",
                        device_id=device.id,
                        backend=rule.onnx_provider,
                        score=_SCORE["onnx-acc"] + tie,
                        reason=_onnx_reason(device, rule, runtimes),
                    )
                )
    for cpu in (d for d in devices if d.kind == DeviceKind.CPU and d.usable):
        if llama:
            placements.append(
                Placement(
                    engine="llama.cpp",
                    device_id=cpu.id,
                    backend="CPU",
                    score=_SCORE["llama-cpu"],
                    reason="; ".join([f"{cpu.name}: llama.cpp on the CPU", *cpu_reasons]),
                )
            )
        if "CPUExecutionProvider" in providers:
            placements.append(
                Placement(
                    engine="onnxruntime",
                    device_id=cpu.id,
                    backend="CPUExecutionProvider",
                    score=_SCORE["onnx-cpu"],
                    reason=f"{cpu.name}: onnxruntime on the CPU (ONNX models only)",
                )
            )
    return sorted(placements, key=lambda p: (-p.score, p.device_id, p.engine))


def _onnx_reason(device: Accelerator, rule: _Rule, runtimes: RuntimeReport) -> str:
    reason = f"{device.name}: ONNX models through onnxruntime's {rule.onnx_provider}"
    # Listed is not usable: onnxruntime-cann lists its provider with no CANN installed and
    # silently falls back to the CPU (accelerators.md 1.11). The probe's note says when.
    caveats = [note for note in runtimes.notes if rule.onnx_provider in note]
    return "; ".join([reason, *caveats])
