"""The fit planner: verdicts per device with their arithmetic, from files and catalog entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.placement.fit import (
    FitKind,
    PlanOptions,
    estimate,
    kv_bytes_per_token,
    plan_catalog,
    plan_model,
)
from appliance.records import Accelerator, DeviceKind, ModelShape
from appliance.store import ModelStore
from appliance.store.catalog import load_catalog
from helpers.tiny_gguf import write_tiny_model

GIB_MIB = 1024


def device(kind: str, gib: float, ident: str | None = None) -> Accelerator:
    return Accelerator(
        id=ident or f"{kind}0", kind=DeviceKind(kind), vendor="test", name=f"{kind} {gib} GiB",
        memory_total_mib=int(gib * GIB_MIB),
    )  # fmt: skip


def catalog_plan(entry_id: str, quant: str, devices: list[Accelerator], **opts: int):
    entry = load_catalog().get(entry_id)
    return plan_catalog(entry, entry.file_for(quant), devices, PlanOptions(**opts))


def test_kv_per_token_matches_the_reference_for_distills_and_mla_layouts():
    entry = load_catalog().get("deepseek-r1-distill-qwen-7b")
    assert kv_bytes_per_token(entry.shape(entry.file_for("Q4_K_M"))) == 57_344
    r1 = load_catalog().get("deepseek-r1")
    assert kv_bytes_per_token(r1.shape(r1.file_for("Q4_K_M"))) == 4_997_120  # legacy GGUF
    mla = r1.model_copy(update={"mla": True})
    assert kv_bytes_per_token(mla.shape(mla.file_for("Q4_K_M"))) == 70_272  # V-less MLA cache


def test_a_7b_q4_k_m_fits_fully_on_a_24_gib_gpu_with_its_arithmetic():
    plan = catalog_plan(
        "deepseek-r1-distill-qwen-7b", "Q4_K_M", [device("cpu", 64), device("nvidia", 24)]
    )
    gpu = plan.devices[1]
    assert gpu.verdict == FitKind.FITS and gpu.gpu_layers == 28
    assert gpu.max_context >= 32_768 and gpu.parallel_slots == 16
    words = "\n".join(gpu.arithmetic)
    assert "57,344 B/token" in words and "28 layers x 4 KV heads x (128 K + 128 V)" in words
    assert "fits fully" in words
    assert plan.best is gpu


def test_a_70b_on_a_24_gib_gpu_is_a_partial_offload_naming_the_layer_count():
    plan = catalog_plan(
        "deepseek-r1-distill-llama-70b", "Q4_K_M", [device("cpu", 128), device("nvidia", 24)]
    )
    gpu = plan.devices[1]
    assert gpu.verdict == FitKind.PARTIAL
    assert 20 < gpu.gpu_layers < 80
    assert f"offload {gpu.gpu_layers} of 80 layers" in "\n".join(gpu.arithmetic)


def test_r1_671b_does_not_fit_a_small_box_anywhere():
    plan = catalog_plan("deepseek-r1", "UD-IQ1_S", [device("cpu", 32), device("nvidia", 24)])
    assert [f.verdict for f in plan.devices] == [FitKind.NO_FIT, FitKind.NO_FIT]
    assert plan.best is None


def test_a_k_quant_on_ascend_falls_back_to_the_cpu_and_says_why():
    plan = catalog_plan(
        "deepseek-r1-distill-qwen-7b", "Q4_K_M", [device("cpu", 64), device("ascend", 64)]
    )
    npu = plan.devices[1]
    assert npu.verdict == FitKind.CPU_ONLY and npu.gpu_layers == 0
    words = "\n".join(npu.arithmetic)
    assert "CANN backend runs only F16, Q8_0 and Q4_0" in words and "Q4_0 or Q8_0 build" in words


def test_the_q4_0_build_is_offloaded_to_ascend():
    plan = catalog_plan(
        "deepseek-r1-distill-qwen-7b", "Q4_0", [device("cpu", 64), device("ascend", 64)]
    )
    assert plan.devices[1].verdict == FitKind.FITS


def test_more_slots_need_more_kv_and_fewer_fit():
    one = catalog_plan(
        "deepseek-r1-distill-qwen-14b", "Q8_0", [device("nvidia", 24)], context_length=8192
    )
    assert one.devices[0].verdict == FitKind.FITS
    assert 0 < one.devices[0].parallel_slots < 16


def test_the_planned_context_never_exceeds_the_trained_length(tmp_path: Path):
    store = ModelStore(tmp_path / "state")
    try:
        info = store.import_file(write_tiny_model(tmp_path / "t.gguf", "qwen2")).model
    finally:
        store.close()
    plan = plan_model(info, [device("cpu", 8)], PlanOptions(context_length=100_000))
    assert plan.devices[0].context_length == 4096 == plan.devices[0].max_context


def test_estimate_of_an_mla_file_counts_one_latent_row_per_layer():
    shape = ModelShape(
        block_count=61, embedding_length=7168, head_count=128, head_count_kv=1,
        key_length=576, value_length=512, key_length_mla=192, vocab_size=129280,
    )  # fmt: skip
    assert estimate(shape, 32768, 1, PlanOptions()).kv == 61 * 576 * 2 * 32768  # 2,196 MiB


@pytest.mark.parametrize("entry", [e.id for e in load_catalog().models])
def test_every_catalog_entry_has_sourced_figures_and_cann_builds(entry):
    item = load_catalog().get(entry)
    assert item.figures_from
    quants = {f.quantization for f in item.files}
    assert {"Q4_0", "Q4_K_M", "Q8_0"} <= quants or entry in ("deepseek-r1", "deepseek-v3")
    assert {"Q4_0", "Q8_0"} <= quants
    for file in item.files:
        assert file.size_from and file.url.startswith("https://huggingface.co/")
        assert file.size_bytes > 0
