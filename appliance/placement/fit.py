"""The fit planner: will a model run on this box's devices, and how; the arithmetic in words.

May import `appliance.records` and the store's catalog types; never the API, engine or UI.

Memory is budgeted the way llama.cpp allocates it (checked against the buffers it reports, see
benchmarks/RESULTS.md): weights (the token-embedding table stays in host memory; the layers and the
output head go to the device), the KV cache (bytes per token x context x slots; for deepseek2 in
the MLA layout one latent row of `key_length` values per layer, as llama.cpp has cached since
PR #19067), and the compute buffer, whose peak is the larger of the attention scores (one f32 per
head, query and cached token, plus the mask) and the logits (one f32 per vocabulary entry and
batch token). A margin covers the runtime's own context (CUDA/CANN) and the OS.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.records import (
    Accelerator,
    CatalogVerdict,
    DeviceFit,
    DeviceKind,
    FitKind,
    FitPlan,
    ModelInfo,
    ModelShape,
)
from appliance.store.catalog import CANN_QUANTS, CatalogEntry, CatalogFile, load_catalog

MIB = 1024**2
GIB = 1024**3
F32 = 4
MAX_SLOTS = 16
# The runtime's own memory on an accelerator (CUDA context, CANN workspace) plus fragmentation.
DEVICE_MARGIN_BYTES = 512 * MIB
DEVICE_MARGIN_SHARE = 0.05
# On the host: the OS, the daemon and page cache for the mmapped weights.
HOST_MARGIN_BYTES = 1 * GIB
HOST_MARGIN_SHARE = 0.10


@dataclass(frozen=True)
class PlanOptions:
    context_length: int = 4096
    parallel: int = 1
    n_ubatch: int = 512
    """Tokens per compute batch (llama.cpp's default n_ubatch)."""
    flash_attn: bool = False
    """llama-cpp-python's default; flash attention does not materialise the score matrix."""
    kv_bytes_per_value: float = 2.0
    """f16 cache; q8_0 is 34/32, q4_0 18/32 (deepseek.md 1.4)."""


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute


def kv_bytes_per_token(shape: ModelShape, per_value: float = 2.0) -> float:
    if shape.key_length_mla:  # MLA: K holds the latent row, V is not cached (V-less cache)
        return shape.block_count * shape.key_length * per_value
    return (
        shape.block_count * shape.head_count_kv * (shape.key_length + shape.value_length)
    ) * per_value


def compute_bytes(shape: ModelShape, n_ctx_total: int, opts: PlanOptions) -> int:
    ubatch = min(opts.n_ubatch, n_ctx_total)
    score_rows = 1 if opts.flash_attn else shape.head_count + 1  # scores per head + the mask
    attention = ubatch * n_ctx_total * score_rows * F32
    logits = ubatch * shape.vocab_size * F32
    return max(attention, logits) + 3 * ubatch * shape.embedding_length * F32


def estimate(shape: ModelShape, context: int, slots: int, opts: PlanOptions) -> Estimate:
    weights = sum(shape.layer_bytes) + shape.input_bytes + shape.output_bytes
    n_ctx = context * slots
    kv = int(kv_bytes_per_token(shape, opts.kv_bytes_per_value) * n_ctx)
    return Estimate(weights, kv, compute_bytes(shape, n_ctx, opts))


def plan_model(
    info: ModelInfo, devices: list[Accelerator], opts: PlanOptions = PlanOptions()
) -> FitPlan:
    if info.shape is None:
        raise ValueError(f"{info.name} has no recorded shape; import it again to plan it")
    quants = set(info.tensor_types) or {info.quantization}
    return plan(
        info.name, info.quantization, quants, info.shape, info.context_length, devices, opts
    )


def plan_catalog(
    entry: CatalogEntry, file: CatalogFile, devices: list[Accelerator],
    opts: PlanOptions = PlanOptions(),
) -> FitPlan:  # fmt: skip
    return plan(
        f"{entry.id}:{file.quantization}", file.quantization, {file.quantization},
        entry.shape(file), entry.context_length, devices, opts,
    )  # fmt: skip


def catalog_verdicts(
    devices: list[Accelerator], opts: PlanOptions = PlanOptions()
) -> list[CatalogVerdict]:
    """Every catalog build with its best verdict on `devices`."""
    rows = []
    for entry in load_catalog().models:
        for file in entry.files:
            fit = plan_catalog(entry, file, devices, opts)
            best = fit.best
            rows.append(CatalogVerdict(
                id=entry.id, name=entry.name, architecture=entry.architecture,
                quantization=file.quantization, file=file.file, size_bytes=file.size_bytes,
                size_exact=file.size_exact, parts=file.parts, url=file.url,
                context_length=entry.context_length, template=entry.template,
                verdict=best.verdict if best else FitKind.NO_FIT,
                device_id=best.device_id if best else "", gpu_layers=best.gpu_layers if best else 0,
                max_context=best.max_context if best else 0,
                summary=(best or fit.devices[0]).arithmetic[-1] if fit.devices else "no devices",
            ))  # fmt: skip
    return rows


def plan(
    name: str, quantization: str, tensor_types: set[str], shape: ModelShape,
    trained_context: int | None, devices: list[Accelerator], opts: PlanOptions,
) -> FitPlan:  # fmt: skip
    context = min(opts.context_length, trained_context or opts.context_length)
    host = next((d for d in devices if d.kind == DeviceKind.CPU), None)
    fits = []
    for device in devices:
        if device.kind == DeviceKind.CPU:
            fits.append(_on_cpu(device, shape, context, trained_context, opts))
        else:
            fits.append(_on_accelerator(device, host, quantization, tensor_types, shape,
                                        context, trained_context, opts))  # fmt: skip
    return FitPlan(model=name, quantization=quantization, devices=fits)


def _weights_words(shape: ModelShape) -> str:
    layers = sum(shape.layer_bytes)
    return (
        f"weights {_gib(layers + shape.input_bytes + shape.output_bytes)}: {shape.block_count} "
        f"layers x {_mib(layers / max(shape.block_count, 1))} + token embedding "
        f"{_mib(shape.input_bytes)} + output {_mib(shape.output_bytes)}"
    )


def _kv_words(shape: ModelShape, context: int, slots: int, opts: PlanOptions) -> str:
    per_token = kv_bytes_per_token(shape, opts.kv_bytes_per_value)
    if shape.key_length_mla:
        how = f"{shape.block_count} layers x {shape.key_length} latent values (MLA)"
    else:
        how = (
            f"{shape.block_count} layers x {shape.head_count_kv} KV heads x "
            f"({shape.key_length} K + {shape.value_length} V)"
        )
    return (
        f"KV cache {per_token:,.0f} B/token ({how} x {opts.kv_bytes_per_value:g} B) x "
        f"{context:,} tokens x {slots} slot(s) = {_mib(per_token * context * slots)}"
    )


def _compute_words(shape: ModelShape, n_ctx: int, opts: PlanOptions) -> str:
    ubatch = min(opts.n_ubatch, n_ctx)
    rows = 1 if opts.flash_attn else shape.head_count + 1
    return (
        f"compute buffer {_mib(compute_bytes(shape, n_ctx, opts))}: the larger of attention "
        f"{ubatch} x {n_ctx:,} x {rows} x 4 B and logits {ubatch} x {shape.vocab_size:,} x 4 B, "
        f"plus 3 x {ubatch} x {shape.embedding_length} x 4 B"
    )


def _margin(total: int, fixed: int, share: float) -> int:
    return int(fixed + share * total)


def _room_for(budget: int, fixed: int, shape: ModelShape, opts: PlanOptions, context: int,
              trained: int | None, layers_share: float = 1.0) -> tuple[int, int]:  # fmt: skip
    """(longest single-slot context, slots of `context`) that fit in `budget` after `fixed`."""
    per_token = kv_bytes_per_token(shape, opts.kv_bytes_per_value) * layers_share

    def need(n_ctx: int) -> int:
        return fixed + int(per_token * n_ctx) + compute_bytes(shape, n_ctx, opts)

    limit = trained or 131072
    best, lo, hi = 0, 1, max(1, limit // 256)
    while lo <= hi:  # contexts in steps of 256 tokens, as llama.cpp pads them
        mid = (lo + hi) // 2
        if need(mid * 256) <= budget:
            best, lo = mid * 256, mid + 1
        else:
            hi = mid - 1
    slots = 0
    while slots < MAX_SLOTS and need(context * (slots + 1)) <= budget:
        slots += 1
    return min(best, limit), slots


def _on_cpu(device: Accelerator, shape: ModelShape, context: int, trained: int | None,
            opts: PlanOptions) -> DeviceFit:  # fmt: skip
    total = device.memory_total_mib * MIB
    margin = _margin(total, HOST_MARGIN_BYTES, HOST_MARGIN_SHARE)
    est = estimate(shape, context, opts.parallel, opts)
    budget = total - margin
    max_ctx, slots = _room_for(budget, est.weights, shape, opts, context, trained)
    ok = est.total <= budget
    lines = [
        _weights_words(shape),
        _kv_words(shape, context, opts.parallel, opts),
        _compute_words(shape, context * opts.parallel, opts),
        f"needed {_gib(est.total)} + margin {_gib(margin)} (1 GiB + 10% for the OS) "
        f"{'<=' if ok else '>'} {_gib(total)} of RAM on {device.id}",
    ]
    lines.append(
        f"runs on the CPU: up to {max_ctx:,} tokens of context, or {slots} slot(s) of {context:,}"
        if ok else "does not fit in RAM: choose a smaller quantization or model"
    )  # fmt: skip
    return DeviceFit(
        device_id=device.id, device=device.name, verdict=FitKind.CPU_ONLY if ok else FitKind.NO_FIT,
        context_length=context, max_context=max_ctx if ok else 0, parallel_slots=slots,
        needed_bytes=est.total, available_bytes=total, arithmetic=lines,
    )  # fmt: skip


def _on_accelerator(
    device: Accelerator, host: Accelerator | None, quantization: str, tensor_types: set[str],
    shape: ModelShape, context: int, trained: int | None, opts: PlanOptions,
) -> DeviceFit:  # fmt: skip
    total = device.memory_total_mib * MIB
    margin = _margin(total, DEVICE_MARGIN_BYTES, DEVICE_MARGIN_SHARE)
    budget = total - margin
    est = estimate(shape, context, opts.parallel, opts)
    lines = [_weights_words(shape), _kv_words(shape, context, opts.parallel, opts),
             _compute_words(shape, context * opts.parallel, opts)]  # fmt: skip
    fit = DeviceFit(device_id=device.id, device=device.name, verdict=FitKind.NO_FIT,
                    context_length=context, available_bytes=total, arithmetic=lines)  # fmt: skip
    lines = fit.arithmetic  # pydantic copied the list: keep appending to the model's own
    unsupported = sorted(t for t in tensor_types if t not in (*CANN_QUANTS, "F32"))
    if device.kind == DeviceKind.ASCEND and unsupported:
        lines.append(
            f"{quantization} on Ascend: llama.cpp's CANN backend runs only F16, Q8_0 and Q4_0 "
            f"weights, and this file has {', '.join(unsupported)}, so no layer would be offloaded "
            "(llama.cpp#18797); import the Q4_0 or Q8_0 build of this model for the NPU"
        )
        return _host_fallback(fit, host, shape, context, trained, opts)
    on_device = est.total - shape.input_bytes  # the embedding table stays in host memory
    fit.needed_bytes = on_device
    if on_device <= budget:
        max_ctx, slots = _room_for(budget, est.weights - shape.input_bytes, shape, opts,
                                   context, trained)  # fmt: skip
        lines.append(
            f"needed on {device.id} {_gib(on_device)} (token embedding {_mib(shape.input_bytes)} "
            f"stays in RAM) + margin {_gib(margin)} (512 MiB + 5% for the runtime) <= "
            f"{_gib(total)}: fits fully, all {shape.block_count} layers offloaded; up to "
            f"{max_ctx:,} tokens of context, or {slots} slot(s) of {context:,}"
        )
        fit.verdict, fit.gpu_layers = FitKind.FITS, shape.block_count
        fit.max_context, fit.parallel_slots = max_ctx, slots
        return fit
    # Partial offload: as many whole layers as fit beside their KV share and the compute buffer.
    per_layer_kv = est.kv / max(shape.block_count, 1)
    room = budget - est.compute - shape.output_bytes
    layers, used = 0, 0
    for size in shape.layer_bytes:
        if used + size + per_layer_kv > room:
            break
        used += size + int(per_layer_kv)
        layers += 1
    if layers == 0:
        lines.append(
            f"not even one layer ({_mib(shape.layer_bytes[0] if shape.layer_bytes else 0)} + its "
            f"KV) fits beside the compute buffer in {_gib(budget)} usable on {device.id}"
        )
        return _host_fallback(fit, host, shape, context, trained, opts)
    rest = est.total - used - est.compute - shape.output_bytes
    host_total = host.memory_total_mib * MIB if host else 0
    host_budget = host_total - _margin(host_total, HOST_MARGIN_BYTES, HOST_MARGIN_SHARE)
    lines.append(
        f"{_gib(on_device)} + margin {_gib(margin)} > {_gib(total)} on {device.id}: offload "
        f"{layers} of {shape.block_count} layers ({_gib(used)} with their KV); the other "
        f"{shape.block_count - layers} and the embedding ({_gib(rest)}) stay in RAM"
    )
    if rest > host_budget:
        lines.append(f"the rest needs {_gib(rest)} of RAM, {_gib(max(host_budget, 0))} usable")
        return fit
    fit.verdict, fit.gpu_layers, fit.needed_bytes = FitKind.PARTIAL, layers, used + est.compute
    fit.max_context, fit.parallel_slots = context, opts.parallel
    return fit


def _host_fallback(fit: DeviceFit, host: Accelerator | None, shape: ModelShape, context: int,
                   trained: int | None, opts: PlanOptions) -> DeviceFit:  # fmt: skip
    if host is None:
        fit.arithmetic.append("no CPU memory record to fall back on: does not fit")
        return fit
    cpu = _on_cpu(host, shape, context, trained, opts)
    fit.arithmetic.append(f"on the CPU instead: {cpu.arithmetic[-2]}")
    if cpu.verdict == FitKind.CPU_ONLY:
        fit.verdict, fit.max_context, fit.parallel_slots = (
            FitKind.CPU_ONLY, cpu.max_context, cpu.parallel_slots,
        )  # fmt: skip
    fit.needed_bytes = cpu.needed_bytes
    return fit


def _mib(size: float) -> str:
    return f"{size / MIB:,.1f} MiB"


def _gib(size: float) -> str:
    return f"{size / GIB:,.2f} GiB"
