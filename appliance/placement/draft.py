"""Which draft model, if any, guesses tokens for a model (speculative decoding).

`engine.draft_model`: `off`; a model name, refused with the reason when its vocabulary differs
from the served model's; or `auto` (the default): the smallest installed GGUF model with the
same vocabulary and at most a quarter of the served model's size (a DeepSeek-R1-Distill-Qwen-1.5B
for the 7B, 14B and 32B distills), never the model itself. A draft model only ever changes the
speed: the worker keeps only tokens the served model samples. It runs on the served model's
device (wholly offloaded where the model is, else on the CPU) with a few KV streams. Its memory
is checked against the device's beside the model as placed (the slots the fit planner chose are
kept: `auto` leaves a draft model out rather than take slots away) and stated in the reason.

Decides from data: the vocabulary fingerprints come from the caller (the store's
`VocabFingerprints.of`). May import records, config, errors and the fit planner.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.config import Config
from appliance.errors import EngineError
from appliance.placement.fit import (
    DEVICE_MARGIN_BYTES,
    DEVICE_MARGIN_SHARE,
    HOST_MARGIN_BYTES,
    HOST_MARGIN_SHARE,
    MIB,
    Estimate,
    PlanOptions,
    estimate,
)
from appliance.records import Accelerator, ModelFormat, ModelInfo, ModelPlacement, ModelShape

SIZE_SHARE = 4
"""A draft model chosen by `auto` is at most 1/SIZE_SHARE of the served model's size: drafting
pays only while a guess costs far less than a step of the served model."""

DRAFT_STREAMS = 4
"""KV streams the worker gives a draft model (`engine.worker.speculation.DRAFT_STREAMS`, which
placement may not import): it guesses for at most that many generating conversations."""

Fingerprint = Callable[[ModelInfo], str | None]


class DraftRefused(EngineError):
    """The configured draft model cannot draft for this model; the message says why."""

    code = "draft_model_refused"
    http_status = 503
    title = "Draft model refused"


def with_draft(
    placement: ModelPlacement, info: ModelInfo, installed: list[ModelInfo], config: Config,
    fingerprint: Fingerprint, devices: list[Accelerator] | None = None,
) -> ModelPlacement:  # fmt: skip
    """`placement` with its draft model set (and said in its reason), or unchanged. With the
    `devices`, a draft model must also fit beside the model (its weights, KV and compute on
    the same device): `auto` then leaves out one that does not, a named one is refused."""
    wanted = config.engine.draft_model.strip()
    if (
        wanted == "off"
        or placement.engine != "llama.cpp"
        or config.engine.speculative_tokens == 0
        or info.format != ModelFormat.GGUF
    ):
        return placement
    if wanted == "auto":
        draft = _auto(info, installed, fingerprint)
        if draft is None:
            return placement
        why = 'same vocabulary, chosen by engine.draft_model = "auto"'
    else:
        draft = _named(wanted, info, installed, fingerprint)
        if draft is None:
            return placement
        why = "engine.draft_model"
    on_device = placement.gpu_layers == -1 and placement.backend != "CPU"
    short = _no_room(info, draft, placement, devices or [], config, on_device)
    if short and wanted == "auto":
        note = f"no draft model: {draft.name} has the same vocabulary, but {short}"
        return placement.model_copy(update={"reason": f"{placement.reason}; {note}"})
    if short:
        raise DraftRefused(
            f"engine.draft_model {draft.name!r} does not fit beside {info.name!r}: {short}; "
            'lower engine.slots or engine.context_length, or set engine.draft_model to "auto" '
            'or "off"'
        )
    share = draft.size_bytes / max(1, info.size_bytes)
    memory = _memory(draft, placement)
    note = (
        f"drafts with {draft.name} ({why}; {share:.0%} of its size"
        + (f", about {memory} MiB more for its weights and KV cache" if memory else "")
        + (f", on {placement.backend}" if on_device else ", on the CPU")
        + ")"
    )
    return placement.model_copy(
        update={
            "draft_model": draft.name,
            "draft_model_path": draft.path,
            "draft_gpu_layers": -1 if on_device else 0,
            "draft_required": wanted != "auto",
            "reason": f"{placement.reason}; {note}" if placement.reason else note,
        }
    )


def _auto(
    info: ModelInfo, installed: list[ModelInfo], fingerprint: Fingerprint
) -> ModelInfo | None:
    candidates = [
        m
        for m in installed
        if m.format == ModelFormat.GGUF
        and m.name != info.name
        and m.sha256 != info.sha256
        and m.size_bytes * SIZE_SHARE <= info.size_bytes
        and (
            not m.parameter_count
            or not info.parameter_count
            or m.parameter_count * SIZE_SHARE <= info.parameter_count
        )
    ]
    if not candidates:
        return None
    own = fingerprint(info)
    if own is None:
        return None
    same = [m for m in candidates if fingerprint(m) == own]
    return min(same, key=lambda m: (m.size_bytes, m.name), default=None)


def _named(
    name: str, info: ModelInfo, installed: list[ModelInfo], fingerprint: Fingerprint
) -> ModelInfo | None:
    if name == info.name:
        return None  # the draft model itself is being served: it drafts for no one
    draft = next((m for m in installed if m.name == name), None)
    fix = 'name another model, or set engine.draft_model to "auto" or "off"'
    if draft is None:
        raise DraftRefused(
            f"engine.draft_model names {name!r}, which is not installed; install it, or {fix}"
        )
    if draft.format != ModelFormat.GGUF:
        raise DraftRefused(
            f"engine.draft_model {name!r} is an {draft.format.value.upper()} model; a draft model "
            f"must be a GGUF model run by llama.cpp like {info.name!r}; {fix}"
        )
    own, theirs = fingerprint(info), fingerprint(draft)
    if own is None or own != theirs:
        raise DraftRefused(
            f"engine.draft_model {name!r} cannot draft for {info.name!r}: their vocabularies "
            "differ (the same token ids would mean different text), and a draft model must "
            f"share the served model's tokenizer; {fix}"
        )
    return draft


def _memory(draft: ModelInfo, placement: ModelPlacement) -> int:
    """MiB the draft model adds (weights, KV for its streams, compute), when its shape is known."""
    if draft.shape is None:
        return 0
    return round(_draft_estimate(draft.shape, placement).total / MIB)


def _draft_estimate(shape: ModelShape, placement: ModelPlacement) -> Estimate:
    context = placement.context_length
    streams = min(placement.slots, DRAFT_STREAMS)
    options = PlanOptions(context_length=context, n_ubatch=128)  # the worker's catch-up chunk
    return estimate(shape, context, streams, options)


def _no_room(
    info: ModelInfo, draft: ModelInfo, placement: ModelPlacement, devices: list[Accelerator],
    config: Config, on_device: bool,
) -> str:  # fmt: skip
    """Why the draft model does not fit beside the model on its device, or "" when it does (or
    cannot be told: no shapes, no device record, a model split between device and RAM)."""
    device = next((d for d in devices if d.id == placement.device_id), None)
    partial = placement.gpu_layers not in (0, -1) or placement.rpc_servers
    if device is None or info.shape is None or draft.shape is None or partial:
        return ""
    per_value = 2.0 if config.engine.kv_cache_type == "f16" else 34 / 32
    options = PlanOptions(context_length=placement.context_length, kv_bytes_per_value=per_value)
    model = estimate(info.shape, placement.context_length, placement.slots, options).total
    extra = _draft_estimate(draft.shape, placement).total
    total = device.memory_total_mib * MIB
    if on_device:  # the token embeddings stay in host memory
        model -= info.shape.input_bytes
        extra -= draft.shape.input_bytes
        budget = total - int(DEVICE_MARGIN_BYTES + DEVICE_MARGIN_SHARE * total)
    else:
        budget = total - int(HOST_MARGIN_BYTES + HOST_MARGIN_SHARE * total)
    if model + extra <= budget:
        return ""
    return (
        f"it needs {extra / MIB:,.0f} MiB more on {device.id}, and the model with its "
        f"{placement.slots} slot(s) already takes {model / MIB:,.0f} of {budget / MIB:,.0f} MiB "
        "usable"
    )


__all__ = ["DraftRefused", "with_draft"]
