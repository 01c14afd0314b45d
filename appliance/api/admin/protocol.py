"""Admin API wire models, shared by the daemon's routes and `appliance.client`.

Pure pydantic + records: importing this must not pull FastAPI or the daemon (the TUI and CLI
import it). Admin models forbid unknown fields, unlike the OpenAI ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.records import (
    Accelerator,
    KeyLimits,
    LoadedModel,
    ModelInfo,
    RuntimeReport,
    UpstreamState,
)


class AdminModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonStatus(AdminModel):
    version: str
    started_at: float
    uptime_s: float
    api_url: str
    """The URL LAN clients use as their OpenAI base URL."""
    listen: str
    api_key_required: bool
    state_dir: str
    admin_socket: str
    default_model: str | None
    devices: list[Accelerator]
    models_loaded: list[LoadedModel]
    models_installed: int
    runtime: RuntimeReport | None = None
    """llama.cpp build and self-tested CPU variant; None while the first probe still runs."""
    tls_mode: str = "off"
    tls_fingerprint: str | None = None
    """SHA-256 of the certificate the LAN API presents (`AB:CD:…`); None without TLS."""
    tls_not_after: float | None = None
    setup_complete: bool = True
    """False until an administrator finished (or skipped) the console's first-boot wizard."""
    discovery: str = "off"
    """mDNS announcement of the LAN API: `advertised as 'NAME' on ADDRESSES`, `off`, or why not."""
    upstreams: list[UpstreamState] = Field(default_factory=list)
    """Servers that upstream model names are forwarded to, with their health."""


class ImportRequest(AdminModel):
    path: str | None = None
    """Absolute path of a GGUF file, ONNX folder or bundle, readable by the daemon's user."""
    url: str | None = None
    """An http(s) URL on the LAN instead of a path; the download resumes if interrupted."""
    name: str | None = None
    sha256: str | None = None
    """Expected digest; a mismatch imports nothing."""


class VerifyRequest(AdminModel):
    name: str | None = None
    """One model, or every installed model when absent."""


class ExportRequest(AdminModel):
    path: str
    """Where the daemon writes the bundle (a path it can write, e.g. a mounted USB stick)."""


class Exported(AdminModel):
    name: str
    path: str
    size_bytes: int


class ImportProgress(AdminModel):
    """One NDJSON line of an import: progress lines, then `done` or `error`."""

    status: Literal["copying", "downloading", "done", "error"]
    completed_bytes: int = 0
    total_bytes: int = 0
    model: ModelInfo | None = None
    created: bool = False
    error: str | None = None
    error_code: str | None = None


class PinRequest(AdminModel):
    pinned: bool
    """True: never unloaded when idle nor to make room for another model; false: the usual
    keep-alive and least-recently-used rules apply again."""


ReasoningFormatName = Literal["deepseek", "ollama", "vllm", "none"]


class KeyCreateRequest(AdminModel):
    name: str | None = None
    scope: Literal["user", "admin"] = "user"
    reasoning_format: ReasoningFormatName | None = None
    """Where answers to this key put reasoning text; unset: the box's `api.reasoning_format`."""


class KeyUpdateRequest(AdminModel):
    """Fields left out stay as they are; `null` resets one to the default."""

    reasoning_format: ReasoningFormatName | None = None
    limits: KeyLimits | None = None
    """The key's limits, replacing all of them (null fields: no limit)."""


class ChatTemplateRequest(AdminModel):
    template: str | None
    """A Jinja2 chat template to use instead of the model file's own; null restores the file's."""


class ApiKeyPublic(AdminModel):
    id: int
    name: str
    prefix: str
    scope: str
    created_at: float
    last_used_at: float | None = None
    revoked: bool = False
    reasoning_format: str | None = None
    limits: KeyLimits = KeyLimits()


class KeyCreated(AdminModel):
    key: str
    """The key itself; shown once, stored only as a hash."""
    info: ApiKeyPublic


class ModelRemoved(AdminModel):
    name: str
    unloaded: bool


class GoldenRequest(AdminModel):
    model: str | None = None
    """Installed model to ask; the default model when absent."""
    max_tokens: int = 64


class GoldenAnswer(AdminModel):
    """The daemon's answer to the doctor's golden prompt, and whether it is sane text."""

    model: str
    prompt: str
    answer: str
    completion_tokens: int
    finish_reason: str
    seconds: float
    sane: bool
    problem: str = ""
    """Why the answer is not sane, when it is not."""
    expected_word_found: bool
    """Whether the (easy) fact came out right; small models may miss it, so only a hint."""


class DiskUsage(AdminModel):
    path: str
    """The folder measured: the state folder, where models are stored."""
    total_bytes: int
    free_bytes: int


class NetworkInterface(AdminModel):
    name: str
    addresses: list[str]
    up: bool


class HostStats(AdminModel):
    """The box itself: memory, model storage, load and network, sampled when asked."""

    hostname: str
    memory_total_bytes: int
    memory_available_bytes: int
    swap_used_bytes: int
    disk: DiskUsage
    load_average: tuple[float, float, float]
    cpu_count: int
    network: list[NetworkInterface]


class LogLine(AdminModel):
    """One record of the daemon's log, as `GET /admin/logs` serves it."""

    seq: int
    """Increases by one per record; ask for `after=` the last one seen to tail the log."""
    timestamp: float
    level: str
    logger: str
    message: str


class HookRunInfo(AdminModel):
    """One lifecycle hook that ran, with how it ended and the end of its output."""

    event: str
    name: str
    started_at: float
    exit_code: int | None
    timed_out: bool
    duration_s: float
    ok: bool
    stdout_tail: str
    stderr_tail: str


class EditableSetting(AdminModel):
    key: str
    value: Any
    """What the daemon runs with now."""
    saved: Any = None
    """What the next start will use, when a saved change differs from `value`."""
    source: Literal["default", "file", "console", "environment"]
    """Where the next start's value comes from; an environment variable wins over the rest."""
    meaning: str


class DaemonSettings(AdminModel):
    """The configuration the daemon runs with, after the file and the environment."""

    settings: dict[str, Any]
    """Every setting by section, as `appliance config show` prints it."""
    config_file: str
    """The file the daemon reads (`APPLIANCE_CONFIG`, `$APPLIANCE_HOME/config.toml` or
    `/etc/ai-appliance/config.toml`); it may not exist, then every default applies."""
    config_file_exists: bool
    editable: list[EditableSetting] = []
    """The settings the console may change, with their current value and where it comes from."""
    restart_pending: list[str] = []
    """Settings saved since the daemon started that take effect at its next start."""


class SettingsChange(AdminModel):
    changes: dict[str, Any]
    """`{"engine.keep_alive_s": 60}`; a value of null or "" drops an earlier change."""


class SettingsSaved(AdminModel):
    saved_to: str
    restart_required: list[str]
    """Changed settings that take effect when the daemon restarts (`POST /admin/restart`)."""
    overridden_by_environment: list[str] = []
    """Saved, but an `APPLIANCE_*` variable in the daemon's environment wins over them."""


class SetupDone(AdminModel):
    """`POST /admin/setup`: the first-boot wizard finished (or was skipped)."""

    skipped: bool = False
    summary: dict[str, Any] = {}
    """What the administrator chose (model, exposure, TLS), kept for support."""


class Restarting(AdminModel):
    message: str


class AuditQuery(AdminModel):
    since: float | None = None
    key: str | None = None
    model: str | None = None
    limit: int = 100


class AuditRecord(AdminModel):
    """One audit log entry: a LAN API request."""

    id: int
    ts: float
    key_id: int | None = None
    key_name: str | None = None
    route: str
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    status: int
    duration_s: float
    prompt: str | None = None


class UpstreamAdd(AdminModel):
    """`POST /admin/upstreams`: forward model `name` to the OpenAI-compatible server at `url`.

    Adding a second URL under the same name adds a replica (load-balanced, with failover);
    the same name and URL again replaces that endpoint's settings."""

    name: str
    url: str
    api_key: str = ""
    """Sent upstream as `Authorization: Bearer`; stored with mode 0600, never shown again."""
    model: str = ""
    """The upstream's own model id; empty: the same as `name`."""
    verify_tls: bool = True
    ca_file: str = ""
    max_streams: int = Field(default=16, ge=1, le=4096)
