"""Planned vs. measured memory: the fit planner's estimate against the buffers llama.cpp reports.

Run: `.venv/bin/python benchmarks/store_memory.py` (prints a Markdown table for RESULTS.md).
Loads each model on the CPU with llama-cpp-python's defaults (n_ubatch 512, flash attention off,
one sequence) in a child process and sums the `model`, `KV`, `compute` and `output` buffer sizes
llama.cpp logs; the planner's figures come from the same GGUF's header.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from appliance.placement.fit import PlanOptions, estimate
from appliance.store.embedded import embedded_model_path
from appliance.store.gguf_meta import read_gguf_metadata
from helpers.llama_memory import measure
from helpers.tiny_gguf import write_tiny_model

MIB = 1024**2


def cases(folder: Path) -> list[tuple[str, Path, int]]:
    smol = embedded_model_path()
    found = [("SmolLM2-135M Q4_1", smol, n) for n in (512, 2048, 8192)]
    for arch in ("llama", "qwen2", "deepseek2"):
        for quant in ("Q8_0", "Q4_0"):
            path = write_tiny_model(folder / f"{arch}-{quant}.gguf", arch, quant=quant)
            found.append((f"tiny {arch} {quant}", path, 4096))
    return found


def rows(folder: Path) -> list[dict[str, float | str | int]]:
    out = []
    for label, path, n_ctx in cases(folder):
        shape = read_gguf_metadata(path).shape
        assert shape is not None
        plan = estimate(shape, n_ctx, 1, PlanOptions())
        got = measure(path, n_ctx)
        measured_total = got["weights"] + got["kv"] + got["compute"] + got["output"]
        out.append({
            "model": label, "n_ctx": n_ctx,
            "weights": (plan.weights, got["weights"]), "kv": (plan.kv, got["kv"]),
            "compute": (plan.compute, got["compute"]), "total": (plan.total, measured_total),
        })  # fmt: skip
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = rows(Path(tmp))
    head = ["model", "n_ctx", "weights MiB (plan / llama.cpp)", "KV MiB", "compute MiB"]
    print("| " + " | ".join([*head, "total MiB", "error"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        cells = []
        for key in ("weights", "kv", "compute", "total"):
            plan, got = row[key]  # type: ignore[misc]
            cells.append(f"{plan / MIB:.2f} / {got / MIB:.2f}")
        plan, got = row["total"]  # type: ignore[misc]
        print(f"| {row['model']} | {row['n_ctx']} | " + " | ".join(cells)
              + f" | {100 * (plan - got) / got:+.1f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
