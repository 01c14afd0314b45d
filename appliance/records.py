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


class VariantStatus(StrEnum):
    CHOSEN = "chosen"
    PASSED = "passed"
    REJECTED = "rejected"
    NOT_TRIED = "not-tried"


class CpuVariantVerdict(BaseModel):
    """One llama.cpp CPU variant (one `libggml-cpu-<name>.so`) as the self-test found it."""

    name: str
    """ggml's variant name: `x64`, `haswell`, `zen4`, `sapphirerapids`…"""
    score: int
    """ggml's CPUID score (0: CPUID says this CPU lacks the variant's instructions)."""
    status: VariantStatus
    reason: str
    """Why it was chosen, rejected or not tried, in words an administrator understands."""
    prompt_tok_s: float | None = None
    """Prompt tokens per second on the self-test model (best of a few rounds)."""
    decode_tok_s: float | None = None
    """Generated tokens per second on the self-test model (best of a few rounds)."""


class CpuRuntimeChoice(BaseModel):
    """The CPU variant every llama.cpp user on this box loads, and the verdict behind it."""

    variant: str
    """Name of the chosen variant; empty when none passed (llama.cpp cannot run here)."""
    path: str
    """Its library file; the workers register exactly this one."""
    reason: str
    verdicts: list[CpuVariantVerdict] = Field(default_factory=list)
    key: str = ""
    """Hash of CPU model, flags, kernel and runtime build: the verdict is redone when it changes."""
    tested_at: float = 0.0
    """Unix time of the self-test."""


class ModelPlacement(BaseModel):
    """How one model runs: decided once (`appliance.placement`), obeyed exactly by its worker,
    shown in status. Every choice has its reason in `reason`."""

    device_id: str
    backend: str
    """llama.cpp backend that does the work: `CPU`, `CUDA`, `CANN`."""
    gpu_layers: int = 0
    """Layers offloaded to the device; -1 all, 0 none."""
    context_length: int
    """Tokens each slot's conversation may hold (never more than the model was trained on)."""
    slots: int
    """Conversations decoded together (continuous batching)."""
    threads: int
    """CPU threads for decoding."""
    runtime: str = ""
    """Which llama.cpp build: `cpu`, `cuda`, `cann`."""
    runtime_dir: str = ""
    """That build's library folder."""
    cpu_variant: str = ""
    """The self-tested CPU variant the worker registers (`zen4`, `haswell`…)."""
    backend_libs: list[str] = Field(default_factory=list)
    """Backend libraries the worker registers, in order: the CPU variant, then the device's."""
    env: dict[str, str] = Field(default_factory=dict)
    """Device visibility for the worker (`CUDA_VISIBLE_DEVICES`, `ASCEND_RT_VISIBLE_DEVICES`)."""
    reason: str = ""
    engine: str = "llama.cpp"
    """The runtime that serves it: `llama.cpp` (GGUF) or `onnxruntime` (ONNX, where `backend`
    is the execution provider)."""
    provider_options: dict[str, str] = Field(default_factory=dict)
    """onnxruntime execution provider options (device id and the like)."""
    rpc_servers: list[str] = Field(default_factory=list)
    """llama.cpp RPC peers (`host:port`) that hold some of the layers (config `rpc.peers`)."""
    draft_model: str = ""
    """The draft model guessing tokens for it (speculative decoding), by name; empty: none."""
    draft_model_path: str = ""
    draft_gpu_layers: int = 0
    """The draft model's offloaded layers: all where the model itself is wholly on the device."""
    draft_required: bool = False
    """Named in `engine.draft_model` (not chosen by `auto`): a draft that fails fails the load."""


class RuntimeReport(BaseModel):
    """What the installed runtimes can use, as probed (in a child process) on this box."""

    llama_cpp_runtime: str | None = None
    """Which llama.cpp build is installed: `cpu`, `cuda` or `cann` (None: none found)."""
    llama_cpp_dir: str | None = None
    """Folder of that build's libraries (what `LLAMA_CPP_LIB_PATH` points the bindings at)."""
    llama_cpp_accelerator_libs: list[str] = Field(default_factory=list)
    """Accelerator backend libraries in that build (`libggml-cuda.so`, `libggml-cann.so`)."""
    cpu_variant: CpuRuntimeChoice | None = None
    """The self-tested CPU variant (see `CpuRuntimeChoice`)."""
    needed_runtime: str | None = None
    """The build this box's accelerators need when another one is installed, in words."""

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
    UPSTREAM = "upstream"
    """Not a file: a name forwarded to OpenAI-compatible servers (appliance.upstream)."""


class ModelShape(BaseModel):
    """What the fit planner needs to know about a model's size, read from its file or catalog.

    Sizes in bytes. For `deepseek2` files with MLA (`key_length_mla` set) llama.cpp caches one
    latent row of `key_length` values per layer and token (deepseek.md 1.4).
    """

    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    """Cached K values per KV head and token (head_dim; kv_lora_rank + rope dim with MLA)."""
    value_length: int
    key_length_mla: int = 0
    """Non-zero when the file is in llama.cpp's MLA layout (deepseek2 after April 2025)."""
    vocab_size: int = 0
    feed_forward_length: int = 0
    layer_bytes: list[int] = Field(default_factory=list)
    """Bytes of each repeating layer's tensors (`blk.N.*`), in order."""
    input_bytes: int = 0
    """Token embedding bytes: llama.cpp keeps this table in host memory even when offloading."""
    output_bytes: int = 0
    """Everything else (output norm and output matrix), placed with the last layer."""


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
    """The template in use: the administrator's override if set, else the file's own."""
    chat_template_overridden: bool = False
    bos_token: str = ""
    eos_token: str = ""
    source: str = ""
    imported_at: float = 0.0
    tensor_types: dict[str, int] = Field(default_factory=dict)
    """How many weight tensors of each type (`Q4_K`: 193, `F32`: 65): the quantization mix."""
    special_tokens: list[str] = Field(default_factory=list)
    """Control and added tokens of the vocabulary (`<think>`...), a few hundred at most."""
    shape: ModelShape | None = None
    """Layer and KV dimensions for the fit planner (None for rows imported before they existed)."""
    catalog_id: str | None = None
    """The catalog entry this file belongs to, when known (a bundle manifest or a catalog URL)."""


class VerifyResult(BaseModel):
    """The outcome of re-hashing one model's files."""

    name: str
    ok: bool
    detail: str


class ImportableFile(BaseModel):
    """Something on a mounted medium that `appliance models import` can take."""

    path: str
    kind: str
    """`gguf` (a file), `onnx` (a folder) or `bundle` (a tar written by `models export`)."""
    size_bytes: int
    detail: str = ""
    """What was read cheaply: the GGUF split part, the bundle's model name."""


class RemovableMount(BaseModel):
    """A mounted filesystem on a removable block device (USB stick, SD card)."""

    device: str
    """Block device, e.g. `/dev/sdb1`."""
    mount_point: str
    filesystem: str
    files: list[ImportableFile] = Field(default_factory=list)


class FitKind(StrEnum):
    FITS = "fits"
    PARTIAL = "partial"
    CPU_ONLY = "cpu_only"
    NO_FIT = "does_not_fit"


class DeviceFit(BaseModel):
    """The verdict for one device, with the figures and the reasoning behind it."""

    device_id: str
    device: str
    verdict: FitKind
    gpu_layers: int = 0
    """Layers offloaded to the device (0 on a CPU)."""
    context_length: int = 0
    """The context per slot the plan was made for."""
    max_context: int = 0
    """Longest context (one slot) that fits, capped at the model's trained length."""
    parallel_slots: int = 0
    """How many slots of `context_length` fit (at most 16)."""
    needed_bytes: int = 0
    available_bytes: int = 0
    arithmetic: list[str] = Field(default_factory=list)
    """The reasoning, one line per step, in words and numbers."""


class FitPlan(BaseModel):
    model: str
    quantization: str
    devices: list[DeviceFit]

    @property
    def best(self) -> DeviceFit | None:
        """The most useful verdict: full offload, then partial, then CPU only."""
        order = [FitKind.FITS, FitKind.PARTIAL, FitKind.CPU_ONLY]
        ranked = [f for f in self.devices if f.verdict in order]
        return min(ranked, key=lambda f: order.index(f.verdict), default=None)


class CatalogVerdict(BaseModel):
    """One catalog build and how it would run on this box (the best device's verdict)."""

    id: str
    name: str
    architecture: str
    quantization: str
    file: str
    size_bytes: int
    size_exact: bool
    parts: int
    url: str
    context_length: int
    template: str
    verdict: FitKind
    device_id: str
    gpu_layers: int
    max_context: int
    summary: str


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
    backend: str = "CPU"
    """The runtime's backend doing the work (`CPU`, `CUDA`, `CANN`)."""
    placement: str = ""
    """Why the model runs where it does, in words."""
    cpu_variant: str = ""
    """The self-tested llama.cpp CPU variant its worker loaded (`zen4`, `haswell`…)."""
    draft_model: str = ""
    """The draft model loaded beside it for speculative decoding; empty: none."""


class KeyLimits(BaseModel):
    """What one key may do; None: no limit of that kind."""

    allowed_models: list[str] | None = None
    """Models this key may use; None: every installed model."""
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    """Prompt plus answer tokens per calendar day (the box's local time)."""
    max_streams: int | None = None
    """Generations at once (a request with `n` choices counts as n)."""


class UpstreamEndpoint(BaseModel):
    """One OpenAI-compatible server that serves an upstream model name (no secrets: the API key
    is stored apart and never leaves the daemon)."""

    name: str
    """The model name LAN clients use (`/v1/models`, `model` in requests)."""
    url: str
    """Base URL of the server's OpenAI API, e.g. `http://10.0.0.5:8000/v1`."""
    model: str = ""
    """The model id the upstream expects; empty: the same as `name`."""
    has_api_key: bool = False
    verify_tls: bool = True
    """Check the upstream's certificate (https URLs); off only for a lab's self-signed server."""
    ca_file: str = ""
    """A CA bundle (PEM) to trust for this upstream instead of the system's."""
    max_streams: int = 16
    """Requests the appliance sends this server at once; more wait in the appliance's queue."""


class UpstreamHealth(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class UpstreamState(UpstreamEndpoint):
    """An endpoint with what the daemon observed (status, TUI, metrics)."""

    health: UpstreamHealth = UpstreamHealth.UNKNOWN
    error: str = ""
    """Why it is down, in words (the last failed check or request)."""
    latency_ms: float | None = None
    """Round-trip of the last health check (`GET /models`)."""
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    checked_at: float | None = None
