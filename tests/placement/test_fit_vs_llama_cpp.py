"""The planner's memory estimate against what llama.cpp really allocates (within 15%).

benchmarks/store_memory.py prints the same comparison as a table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.placement.fit import PlanOptions, estimate
from appliance.store.gguf_meta import read_gguf_metadata
from helpers.llama_memory import measure
from helpers.tiny_gguf import write_tiny_model


def check(path: Path, n_ctx: int) -> None:
    shape = read_gguf_metadata(path).shape
    assert shape is not None
    planned = estimate(shape, n_ctx, 1, PlanOptions())
    got = measure(path, n_ctx)
    assert got["n_ctx"] == n_ctx
    assert planned.kv == pytest.approx(got["kv"], rel=0.01)  # llama.cpp prints 2 decimals of MiB
    assert planned.compute == pytest.approx(got["compute"], rel=0.15)
    measured = got["weights"] + got["kv"] + got["compute"] + got["output"]
    assert planned.total == pytest.approx(measured, rel=0.15)


@pytest.mark.parametrize("n_ctx", [512, 8192])
def test_smollm2_plan_matches_llama_cpp_buffers(embedded_model, n_ctx):
    check(embedded_model, n_ctx)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "deepseek2"])
def test_tiny_model_plan_matches_llama_cpp_buffers(tmp_path, arch, quant):
    check(write_tiny_model(tmp_path / f"{arch}.gguf", arch, quant=quant), 4096)
