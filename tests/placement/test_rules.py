"""appliance/placement/rules.py: devices x runtimes -> ranked placements, with reasons."""

from __future__ import annotations

from appliance.placement.rules import rank_placements as plan
from appliance.records import Accelerator, DeviceKind, RuntimeReport

CPU = Accelerator(id="cpu0", kind=DeviceKind.CPU, vendor="Intel", name="Xeon Gold 6430")
H100 = Accelerator(
    id="nvidia0", kind=DeviceKind.NVIDIA, vendor="NVIDIA", name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559, pci_address="0000:06:00.0",
)  # fmt: skip
NPU = Accelerator(
    id="ascend0", kind=DeviceKind.ASCEND, vendor="Huawei", name="Ascend 910B3",
    memory_total_mib=65536, pci_address="0000:c1:00.0",
)  # fmt: skip
CPU_ONLY_LLAMA = RuntimeReport(
    llama_cpp_version="0.3.36", llama_cpp_backends=["CPU"],
    onnxruntime_version="1.32.0", onnxruntime_providers=["CPUExecutionProvider"],
)  # fmt: skip


def test_nvidia_with_cuda_built_llama_cpp_offloads_to_the_gpu() -> None:
    runtimes = CPU_ONLY_LLAMA.model_copy(update={"llama_cpp_backends": ["CPU", "CUDA"]})

    best = plan([H100, CPU], runtimes)[0]

    assert (best.engine, best.device_id, best.backend) == ("llama.cpp", "nvidia0", "CUDA")
    assert best.reason == (
        "NVIDIA H100 80GB HBM3: llama.cpp was built with CUDA; offload all layers that fit"
    )


def test_ascend_with_cpu_only_llama_cpp_falls_back_to_the_cpu_and_says_why() -> None:
    best = plan([NPU, CPU], CPU_ONLY_LLAMA)[0]

    assert (best.engine, best.device_id, best.backend) == ("llama.cpp", "cpu0", "CPU")
    assert "llama.cpp was built without CANN; install the CANN build" in best.reason


def test_ascend_with_the_cann_provider_in_onnxruntime_places_onnx_on_the_npu() -> None:
    runtimes = CPU_ONLY_LLAMA.model_copy(
        update={"onnxruntime_providers": ["CANNExecutionProvider", "CPUExecutionProvider"]}
    )

    placements = plan([NPU, CPU], runtimes)

    onnx = [p for p in placements if p.engine == "onnxruntime"]
    assert (onnx[0].device_id, onnx[0].backend) == ("ascend0", "CANNExecutionProvider")
    assert [p.device_id for p in placements] == ["ascend0", "cpu0", "cpu0"]  # ranked


def test_a_listed_but_unloadable_cann_provider_carries_the_probes_caveat() -> None:
    note = "onnxruntime lists CANNExecutionProvider, but libascendcl.so (CANN) cannot be loaded"
    runtimes = CPU_ONLY_LLAMA.model_copy(
        update={"onnxruntime_providers": ["CANNExecutionProvider"], "notes": [note]}
    )

    [onnx] = [p for p in plan([NPU, CPU], runtimes) if p.engine == "onnxruntime"]

    assert note in onnx.reason


def test_an_unusable_accelerator_gets_no_placement_and_cpu_only_boxes_use_the_cpu() -> None:
    hidden = H100.model_copy(update={"usable": False})
    runtimes = CPU_ONLY_LLAMA.model_copy(update={"llama_cpp_backends": ["CPU", "CUDA"]})

    assert {p.device_id for p in plan([hidden, CPU], runtimes)} == {"cpu0"}
    assert [(p.engine, p.backend) for p in plan([CPU], CPU_ONLY_LLAMA)] == [
        ("llama.cpp", "CPU"),
        ("onnxruntime", "CPUExecutionProvider"),
    ]


def test_no_runtime_installed_means_no_placement() -> None:
    assert plan([CPU], RuntimeReport(notes=["llama-cpp-python cannot be loaded"])) == []
