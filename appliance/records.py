"""Device, telemetry and model records shared by every layer.

A leaf module: it imports only the standard library and pydantic, so drivers, the daemon, the
admin client and the TUI can all speak the same records. Units live in field names.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class DeviceKind(StrEnum):
    """What sort of compute a device record describes."""

    CPU = "cpu"
    NVIDIA = "nvidia"
    ASCEND = "ascend"


class Accelerator(BaseModel):
    """One compute device the box can run a model on, as a driver found it."""

    id: str
    """Stable id within this box, e.g. `cpu0`, `nvidia0`, `ascend3`."""
    kind: DeviceKind
    vendor: str
    """Vendor name as an administrator knows it (`Intel`, `NVIDIA`, `Huawei`)."""
    name: str
    """Product name (`Intel(R) Xeon(R) Gold 6430`, `NVIDIA H100 80GB HBM3`, `Ascend 910B`)."""
    memory_total_mib: int = 0
    """Memory a model can use on this device, in MiB (system RAM for a CPU)."""
    usable: bool = True
    """Whether a model can be placed on this device right now."""
    reason: str = ""
    """Why the device is usable or not, in words an administrator can act on."""
    pci_address: str | None = None
    details: dict[str, object] = Field(default_factory=dict)
    """Vendor-specific facts (cores, ISA flags, driver versions), documented by each driver."""


class Telemetry(BaseModel):
    """One sample of a device's live state. Fields a driver cannot read stay None."""

    device_id: str
    timestamp: float
    """Seconds since the epoch when the sample was taken."""
    utilization_pct: float | None = None
    memory_used_mib: int | None = None
    memory_total_mib: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    """Enforced board power limit in W, where the vendor reports one."""
    health: str | None = None
    """Vendor health word (`OK`, `Warning`, `Alarm`, `Critical`), where the vendor reports one."""
    available: bool = True
    """False when the sample could not be taken; `error` then says why. The device stays listed."""
    error: str = ""


class DeviceTelemetry(BaseModel):
    """The telemetry cache as the admin API serves it."""

    latest: dict[str, Telemetry] = Field(default_factory=dict)
    """Last sample per device id."""
    history: dict[str, list[Telemetry]] = Field(default_factory=dict)
    """Oldest first, up to `devices.history_length` samples per device; empty unless asked."""
    interval_s: float = 2.0


class DeviceEvent(BaseModel):
    """A change the device manager saw: an accelerator or a USB disk came or went."""

    action: str
    """`added`, `removed` or `changed`."""
    subsystem: str
    """udev subsystem of the change: `pci` (accelerators) or `block` (USB disks)."""
    sys_path: str = ""
    device_id: str | None = None
    """The accelerator id concerned (`nvidia0`), None for a USB disk."""
    devnode: str | None = None
    """Block device node (`/dev/sdb1`) for a USB disk."""
    device: Accelerator | None = None
    """The record as it was before removal, or as found on arrival."""
    timestamp: float = 0.0


class Placement(BaseModel):
    """One way to run a model here: which runtime on which device, and why (ranked by score)."""

    engine: str
    """Runtime: `llama.cpp` or `onnxruntime`."""
    device_id: str
    backend: str
    """Backend inside the runtime: `CUDA`, `CANN`, `CPU` (llama.cpp); an execution provider
    name such as `CUDAExecutionProvider` (onnxruntime)."""
    score: int
    """Higher is better; only the order matters."""
    reason: str
    """Why this placement, or why a better one is not possible, in actionable words."""


class RuntimeReport(BaseModel):
    """What the installed runtimes can use, as probed (in a child process) on this box."""

    llama_cpp_version: str | None = None
    """None when llama-cpp-python is not installed or failed to load."""
    llama_cpp_backends: list[str] = Field(default_factory=list)
    """ggml backend registry names compiled in (`CPU`, `CUDA`, `CANN`)."""
    llama_cpp_devices: list[str] = Field(default_factory=list)
    """ggml devices visible now (`CPU`, `CUDA0`, `CANN0`)."""
    llama_cpp_gpu_offload: bool = False
    """`llama_supports_gpu_offload()`: a GPU backend is built in AND a device is visible now."""
    onnxruntime_version: str | None = None
    onnxruntime_providers: list[str] = Field(default_factory=list)
    """`get_available_providers()`: listed is not proven usable (see `notes`)."""
    notes: list[str] = Field(default_factory=list)
    """Caveats found while probing, e.g. a CANN provider listed without CANN installed."""


class ModelFormat(StrEnum):
    GGUF = "gguf"
    ONNX = "onnx"


class ModelInfo(BaseModel):
    """A model registered in the store."""

    name: str
    format: ModelFormat
    path: str
    """Absolute path of the model file (GGUF) or directory (ONNX) inside the store."""
    sha256: str
    size_bytes: int
    architecture: str = ""
    parameter_count: int | None = None
    quantization: str = ""
    context_length: int | None = None
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    source: str = ""
    imported_at: float = 0.0


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


class LoadedModel(BaseModel):
    """A model the engine manager holds in a worker process."""

    name: str
    state: ModelState
    device_id: str
    engine: str
    """Runtime serving the model (`llama.cpp`, later `onnxruntime`, `upstream`)."""
    pid: int | None = None
    context_length: int | None = None
    error: str = ""
    loaded_at: float | None = None
    load_seconds: float | None = None
    load_progress: float | None = None
    """Fraction of the weights read while loading (0..1)."""
    pinned: bool = False
    """Never unloaded for idleness or to make room (the default model is pinned)."""
    slots: int | None = None
    """Conversations this model decodes together."""
    restarts: int = 0
    """Times the worker was restarted after dying or hanging."""
