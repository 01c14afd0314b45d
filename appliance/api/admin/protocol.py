"""Admin API wire models, shared by the daemon's routes and `appliance.client`.

Pure pydantic + records: importing this must not pull FastAPI or the daemon (the TUI and CLI
import it). Admin models forbid unknown fields, unlike the OpenAI ones.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from appliance.records import Accelerator, LoadedModel, ModelInfo, RuntimeReport


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


ReasoningFormatName = Literal["deepseek", "ollama", "vllm", "none"]


class KeyCreateRequest(AdminModel):
    name: str | None = None
    scope: Literal["user", "admin"] = "user"
    reasoning_format: ReasoningFormatName | None = None
    """Where answers to this key put reasoning text; unset: the box's `api.reasoning_format`."""


class KeyUpdateRequest(AdminModel):
    reasoning_format: ReasoningFormatName | None


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


class ErrorBody(AdminModel):
    code: str
    message: str
    title: str


class ErrorEnvelope(AdminModel):
    error: ErrorBody
