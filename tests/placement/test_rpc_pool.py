"""llama.cpp RPC pooling in the planner: peers' memory counts, the runtime must have RPC, and the
worker is told the peers. The peers here are configuration only: the runtime this suite uses
is built without GGML_RPC, so no layer ever travels to a real `rpc-server` (docs/scale-out.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Config, load_config
from appliance.engine.client import WorkerProcess
from appliance.errors import ConfigError, EngineError
from appliance.placement import ALL_LAYERS, NoPlacement, place_model
from appliance.records import Accelerator, CpuRuntimeChoice, DeviceKind, ModelInfo, RuntimeReport
from appliance.store.models import ModelStore
from helpers.runtime import load_message

SMALL_RAM = Accelerator(
    id="cpu0", kind=DeviceKind.CPU, vendor="Intel", name="Xeon", memory_total_mib=1100
)  # too little for SmolLM2 with its margin (test_place_model)
H100 = Accelerator(
    id="nvidia0", kind=DeviceKind.NVIDIA, vendor="NVIDIA", name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559,
)  # fmt: skip
TWO_PEERS = {"peers": ["192.168.50.21:50052=2GiB", "192.168.50.22:50052=2048MiB"]}


def runtime(folder: Path, *, rpc: bool, accelerator: bool = False) -> RuntimeReport:
    folder.mkdir(parents=True, exist_ok=True)
    if rpc:
        (folder / "libggml-rpc.so").write_bytes(b"")  # what `build-llama-runtime.sh --rpc` adds
    variant = CpuRuntimeChoice(variant="zen4", path=str(folder / "libggml-cpu-zen4.so"),
                               reason="test")  # fmt: skip
    libs = [str(folder / "libggml-cuda.so")] if accelerator else []
    backends = ["CPU", "CUDA"] if accelerator else ["CPU"]
    return RuntimeReport(
        llama_cpp_version="0.3.36", llama_cpp_backends=backends, llama_cpp_dir=str(folder),
        llama_cpp_runtime="cuda" if accelerator else "cpu", cpu_variant=variant,
        llama_cpp_accelerator_libs=libs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> ModelInfo:
    return ModelStore(tmp_path_factory.mktemp("state")).import_file(embedded_model, "smollm2").model


def test_a_model_too_big_for_this_box_is_spread_over_the_peers_memory(
    smollm2: ModelInfo, tmp_path: Path
) -> None:
    report = runtime(tmp_path / "rt", rpc=True)
    placed = place_model(smollm2, [SMALL_RAM], report, Config(rpc=TWO_PEERS))
    assert placed.rpc_servers == ["192.168.50.21:50052", "192.168.50.22:50052"]
    assert placed.gpu_layers == ALL_LAYERS
    assert placed.backend_libs[-1] == str(tmp_path / "rt" / "libggml-rpc.so")
    assert "RPC pool: RPC peer 192.168.50.21:50052 2.00 GiB" in placed.reason
    assert "fits, spread by each device's memory" in placed.reason
    assert "does not fit in this box's memory" in placed.reason  # why not here alone


def test_peers_too_small_leave_the_refusal_with_the_pool_arithmetic(
    smollm2: ModelInfo, tmp_path: Path
) -> None:
    report = runtime(tmp_path / "rt", rpc=True)
    tiny = Config(rpc={"peers": ["10.0.0.2:50052=600MiB"]})
    with pytest.raises(NoPlacement, match=r"the RPC peers would not hold more of it: RPC pool"):
        place_model(smollm2, [SMALL_RAM], report, tiny)


def test_a_model_that_fits_a_local_accelerator_never_goes_over_the_network(
    smollm2: ModelInfo, tmp_path: Path
) -> None:
    report = runtime(tmp_path / "rt", rpc=True, accelerator=True)
    cpu = SMALL_RAM.model_copy(update={"memory_total_mib": 65536})
    placed = place_model(smollm2, [cpu, H100], report, Config(rpc=TWO_PEERS))
    assert placed.device_id == "nvidia0" and placed.rpc_servers == []


def test_peers_without_an_rpc_build_are_named_as_the_reason(
    smollm2: ModelInfo, tmp_path: Path
) -> None:
    report = runtime(tmp_path / "rt", rpc=False)
    with pytest.raises(NoPlacement, match=r"built without GGML_RPC .* --rpc"):
        place_model(smollm2, [SMALL_RAM], report, Config(rpc=TWO_PEERS))
    roomy = SMALL_RAM.model_copy(update={"memory_total_mib": 65536})
    placed = place_model(smollm2, [roomy], report, Config(rpc=TWO_PEERS))
    assert placed.rpc_servers == [] and "built without GGML_RPC" in placed.reason


def test_a_peer_without_its_memory_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[rpc]\npeers = ["192.168.50.21:50052"]\n')
    with pytest.raises(ConfigError, match=r"rpc.peers.*HOST:PORT=MEMORY"):
        load_config(config)
    config.write_text('[rpc]\nserver_listen = "everywhere"\n')
    with pytest.raises(ConfigError, match=r"rpc.server_listen"):
        load_config(config)


async def test_the_worker_refuses_rpc_peers_on_a_runtime_without_rpc(embedded_model: Path) -> None:
    """The worker is told the peers (Load.rpc_servers) and says plainly why it cannot use them."""
    worker = WorkerProcess("smollm2")
    load = load_message(str(embedded_model), 512, 1, rpc_servers=["127.0.0.1:50052"])
    with pytest.raises(EngineError, match="built without GGML_RPC"):
        await worker.start(load, timeout_s=60)
    assert not worker.alive
