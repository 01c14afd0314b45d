"""The text of a model's details page: metadata, template, fit on this box, live engine counters.

Pure formatting over admin-protocol records.
"""

from __future__ import annotations

from typing import Any

from appliance.records import CatalogVerdict, FitPlan, LoadedModel, ModelInfo
from appliance.ui.format import clock, human_bytes, or_dash


def _count(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.0f} M"


def model_details(
    info: ModelInfo, loaded: LoadedModel | None, fit: FitPlan | None, stats: dict[str, Any] | None
) -> str:
    template = "overridden by the administrator" if info.chat_template_overridden else (
        "from the model file" if info.chat_template else "none (ChatML fallback)"
    )  # fmt: skip
    lines = [
        f"name           {info.name}",
        f"format         {info.format}   architecture {info.architecture or '-'}",
        f"quantization   {info.quantization or '-'}   size {human_bytes(info.size_bytes)}",
        f"parameters     {_count(info.parameter_count)}",
        f"context        {or_dash(info.context_length)} tokens (trained)",
        f"chat template  {template}",
        f"imported       {clock(info.imported_at)} from {info.source or '-'}",
        f"sha256         {info.sha256}",
        f"path           {info.path}",
    ]
    if loaded is None:
        lines.append("engine         not loaded (l loads it)")
    else:
        lines += [
            f"engine         {loaded.state} on {loaded.device_id}/{loaded.backend} "
            f"({loaded.engine}, pid {or_dash(loaded.pid)})",
            f"slots          {or_dash(loaded.slots)} × {or_dash(loaded.context_length)} tokens; "
            f"load took {or_dash(loaded.load_seconds, ' s')}; restarts {loaded.restarts}",
            f"placement      {loaded.placement or '-'}",
        ]
        if loaded.error:
            lines.append(f"error          {loaded.error}")
    if stats:
        shown = {k: v for k, v in stats.items() if k != "model"}
        lines.append("live counters  " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    if fit and fit.best:
        best = fit.best
        lines += ["", f"Fit on this box: {best.verdict} on {best.device}"]
        lines += [f"  {step}" for step in best.arithmetic]
    return "\n".join(lines)


def catalog_details(entry: CatalogVerdict) -> str:
    return "\n".join(
        [
            f"{entry.name}  ({entry.id})",
            f"architecture {entry.architecture}, {entry.quantization}, "
            f"{human_bytes(entry.size_bytes)}{'' if entry.size_exact else ' (about)'}, "
            f"{entry.parts} file(s)",
            f"context {entry.context_length}; template {entry.template}",
            "",
            f"On this box: {entry.verdict} on {entry.device_id} "
            f"({entry.gpu_layers} GPU layers, up to {entry.max_context} tokens)",
            entry.summary,
            "",
            f"download: {entry.url}",
            "i imports it from that URL (the box must reach it), or copy the file on a USB stick.",
        ]
    )
