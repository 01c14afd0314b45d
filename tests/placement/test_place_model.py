"""appliance/placement: where a model runs, on which build and CPU variant, with how many
layers, slots and tokens of context; the worker obeys the answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Config
from appliance.placement import ALL_LAYERS, NoPlacement, choose_default_model, place_model
from appliance.records import (
    Accelerator,
    CpuRuntimeChoice,
    DeviceKind,
    ModelFormat,
    ModelInfo,
    RuntimeReport,
)
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
ZEN4 = CpuRuntimeChoice(variant="zen4", path="/rt/cpu/libggml-cpu-zen4.so", reason="test")
CPU_LLAMA = RuntimeReport(
    llama_cpp_version="0.3.36", llama_cpp_backends=["CPU"], llama_cpp_runtime="cpu",
    llama_cpp_dir="/rt/cpu", cpu_variant=ZEN4,
)  # fmt: skip
CUDA_LLAMA = CPU_LLAMA.model_copy(
    update={
        "llama_cpp_backends": ["CPU", "CUDA"], "llama_cpp_runtime": "cuda",
        "llama_cpp_dir": "/rt/cuda", "llama_cpp_accelerator_libs": ["/rt/cuda/libggml-cuda.so"],
    }
)  # fmt: skip


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> ModelInfo:
    store = ModelStore(tmp_path_factory.mktemp("state"))
    return store.import_file(embedded_model, "smollm2").model


def test_cpu_only_box_loads_on_the_cpu_with_the_self_tested_variant(smollm2: ModelInfo) -> None:
    placed = place_model(smollm2, [CPU], CPU_LLAMA, Config())
    assert (placed.device_id, placed.backend, placed.gpu_layers) == ("cpu0", "CPU", 0)
    assert (placed.runtime_dir, placed.backend_libs) == ("/rt/cpu", [ZEN4.path])
    assert placed.cpu_variant == "zen4" and "zen4" in placed.reason
    assert placed.env == {}  # nothing to hide on a CPU


def test_cpu_slots_come_from_the_fit_planner_and_the_ram(smollm2: ModelInfo) -> None:
    roomy = place_model(smollm2, [CPU], CPU_LLAMA, Config())
    cramped = CPU.model_copy(update={"memory_total_mib": 1600})
    tight = place_model(smollm2, [cramped], CPU_LLAMA, Config())
    assert roomy.slots == 16  # 64 GiB holds the most slots of 4,096 tokens for SmolLM2
    assert 1 <= tight.slots < roomy.slots
    assert "slot(s) of 4,096" in tight.reason  # the arithmetic is shown


def test_a_model_bigger_than_ram_is_refused_with_the_arithmetic(smollm2: ModelInfo) -> None:
    tiny_box = CPU.model_copy(update={"memory_total_mib": 1100})
    with pytest.raises(NoPlacement, match="does not fit in this box's memory"):
        place_model(smollm2, [tiny_box], CPU_LLAMA, Config())


def test_context_zero_means_the_trained_length_for_the_plan_and_the_worker(
    smollm2: ModelInfo,
) -> None:
    placed = place_model(smollm2, [CPU], CPU_LLAMA, Config(engine={"context_length": 0}))
    assert placed.context_length == smollm2.context_length == 8192
    longer = place_model(smollm2, [CPU], CPU_LLAMA, Config(engine={"context_length": 100000}))
    assert longer.context_length == 8192  # never beyond what the model was trained on


def test_no_runtime_is_a_clear_refusal(smollm2: ModelInfo) -> None:
    missing = RuntimeReport(notes=["no llama.cpp runtime is installed in /x"])
    with pytest.raises(NoPlacement, match=r"no llama\.cpp runtime is installed in /x"):
        place_model(smollm2, [CPU], missing, Config())


def test_an_onnx_model_is_not_handed_to_llama_cpp(smollm2: ModelInfo) -> None:
    onnx = smollm2.model_copy(update={"format": ModelFormat.ONNX, "name": "tiny-onnx"})
    with pytest.raises(NoPlacement, match="ONNX model, served by onnxruntime"):
        place_model(onnx, [CPU], CPU_LLAMA, Config())  # this box's onnxruntime lists nothing


ORT_CPU = CPU_LLAMA.model_copy(
    update={"onnxruntime_version": "1.32.0", "onnxruntime_providers": ["CPUExecutionProvider"]}
)


@pytest.mark.parametrize(
    ("devices", "providers", "device_id", "provider", "env"),
    [
        ([CPU], ["CPUExecutionProvider"], "cpu0", "CPUExecutionProvider", {}),
        ([H100, CPU], ["CUDAExecutionProvider", "CPUExecutionProvider"], "nvidia0",
         "CUDAExecutionProvider", {"CUDA_VISIBLE_DEVICES": "0"}),
        ([NPU, CPU], ["CANNExecutionProvider", "CPUExecutionProvider"], "ascend0",
         "CANNExecutionProvider", {"ASCEND_RT_VISIBLE_DEVICES": "0"}),
        ([H100, CPU], ["CPUExecutionProvider"], "cpu0", "CPUExecutionProvider", {}),
    ],
)  # fmt: skip
def test_an_onnx_model_runs_on_onnxruntimes_best_provider_with_the_reason(
    smollm2: ModelInfo, devices: list[Accelerator], providers: list[str], device_id: str,
    provider: str, env: dict[str, str],
) -> None:  # fmt: skip
    onnx = smollm2.model_copy(update={"format": ModelFormat.ONNX, "name": "tiny-onnx"})
    runtimes = CUDA_LLAMA.model_copy(
        update={"onnxruntime_version": "1.32.0", "onnxruntime_providers": providers}
    )
    placed = place_model(onnx, devices, runtimes, Config())
    assert placed.engine == "onnxruntime"
    assert (placed.device_id, placed.backend, placed.env) == (device_id, provider, env)
    assert provider in placed.reason or "onnxruntime on the CPU" in placed.reason
    assert placed.provider_options == ({"device_id": "0"} if env else {})
    assert placed.backend_libs == [] and placed.gpu_layers == 0  # nothing of llama.cpp


def test_a_gguf_model_is_still_placed_on_llama_cpp_when_onnxruntime_could_run(
    smollm2: ModelInfo,
) -> None:
    placed = place_model(smollm2, [CPU], ORT_CPU, Config())
    assert (placed.engine, placed.backend) == ("llama.cpp", "CPU")


def test_the_default_model_is_never_an_onnx_model_chosen_by_itself(smollm2: ModelInfo) -> None:
    onnx = smollm2.model_copy(
        update={"format": ModelFormat.ONNX, "name": "big-onnx", "size_bytes": 10**12}
    )
    assert choose_default_model([onnx, smollm2], [CPU], Config()) == "smollm2"
    assert choose_default_model([onnx], [CPU], Config()) is None


def test_one_gpu_of_several_is_the_only_one_the_worker_sees(smollm2: ModelInfo) -> None:
    gpu0 = H100.model_copy(update={"details": {"uuid": "GPU-aaaa", "index": 0}})
    gpu1 = H100.model_copy(
        update={"id": "nvidia1", "memory_total_mib": 95000,
                "details": {"uuid": "GPU-bbbb", "index": 1}}
    )  # fmt: skip
    placed = place_model(smollm2, [gpu0, gpu1, CPU], CUDA_LLAMA, Config())
    assert placed.device_id == "nvidia1"  # the larger card ranks first
    assert placed.env == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}
    assert placed.backend_libs == [ZEN4.path, "/rt/cuda/libggml-cuda.so"]


def test_the_default_model_is_the_largest_that_the_planner_fits(
    smollm2: ModelInfo,
) -> None:
    huge = smollm2.model_copy(update={"name": "huge", "size_bytes": smollm2.size_bytes * 1000})
    assert huge.shape is not None
    huge.shape = huge.shape.model_copy(
        update={"layer_bytes": [b * 1000 for b in huge.shape.layer_bytes]}
    )
    assert choose_default_model([smollm2, huge], [CPU], Config()) == "smollm2"
    roomy = CPU.model_copy(update={"memory_total_mib": 1024 * 1024})
    assert choose_default_model([smollm2, huge], [roomy], Config()) == "huge"


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
