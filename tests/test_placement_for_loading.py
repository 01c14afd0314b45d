"""appliance/placement.py: which device and how many layers a model is loaded with."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Config
from appliance.placement import ALL_LAYERS, place_model
from appliance.records import Accelerator, DeviceKind, ModelInfo, RuntimeReport
from appliance.store.models import ModelStore

CPU = Accelerator(
    id="cpu0", kind=DeviceKind.CPU, vendor="Intel", name="Xeon", memory_total_mib=65536
)
H100 = Accelerator(
    id="nvidia0", kind=DeviceKind.NVIDIA, vendor="NVIDIA", name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559,
)  # fmt: skip
SMALL_GPU = H100.model_copy(update={"name": "a 700 MiB GPU", "memory_total_mib": 700})
NPU = Accelerator(
    id="ascend0", kind=DeviceKind.ASCEND, vendor="Huawei", name="Ascend 910B3",
    memory_total_mib=65536,
)  # fmt: skip
CPU_LLAMA = RuntimeReport(llama_cpp_version="0.3.36", llama_cpp_backends=["CPU"])
CUDA_LLAMA = CPU_LLAMA.model_copy(update={"llama_cpp_backends": ["CPU", "CUDA"]})


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> ModelInfo:
    store = ModelStore(tmp_path_factory.mktemp("state"))
    return store.import_file(embedded_model, "smollm2").model


def test_cpu_only_box_loads_on_the_cpu(smollm2: ModelInfo) -> None:
    placed = place_model(smollm2, [CPU], CPU_LLAMA, Config())
    assert (placed.device_id, placed.backend, placed.gpu_layers) == ("cpu0", "CPU", 0)


def test_gpu_with_a_cuda_build_gets_every_layer_and_slots_that_fit(smollm2: ModelInfo) -> None:
    placed = place_model(smollm2, [H100, CPU], CUDA_LLAMA, Config())
    assert (placed.device_id, placed.backend, placed.gpu_layers) == ("nvidia0", "CUDA", ALL_LAYERS)
    assert placed.slots == 16  # an 80 GB card holds the maximum for a 135M model
    assert "built with CUDA" in placed.reason


def test_gpu_too_small_for_all_layers_gets_a_partial_offload(smollm2: ModelInfo) -> None:
    placed = place_model(smollm2, [SMALL_GPU, CPU], CUDA_LLAMA, Config())
    assert placed.device_id == "nvidia0"
    assert 0 < placed.gpu_layers < 30  # SmolLM2-135M has 30 layers
    assert "partial offload" in placed.reason


def test_npu_without_a_cann_build_loads_on_the_cpu_and_says_why(smollm2: ModelInfo) -> None:
    placed = place_model(smollm2, [NPU, CPU], CPU_LLAMA, Config())
    assert (placed.device_id, placed.gpu_layers) == ("cpu0", 0)
    assert "install the CANN build" in placed.reason


def test_configured_slots_are_kept(smollm2: ModelInfo) -> None:
    placed = place_model(smollm2, [H100, CPU], CUDA_LLAMA, Config(engine={"slots": 3}))
    assert placed.slots == 3


def test_gpu_that_cannot_hold_one_layer_falls_back_to_the_cpu(smollm2: ModelInfo) -> None:
    tiny_gpu = H100.model_copy(update={"memory_total_mib": 256})
    placed = place_model(smollm2, [tiny_gpu, CPU], CUDA_LLAMA, Config())
    assert (placed.device_id, placed.gpu_layers) == ("cpu0", 0)
    assert "nvidia0 cannot hold it" in placed.reason
