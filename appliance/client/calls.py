"""The admin API's requests, declared once: method, path, arguments and how to read the answer.

Both `AdminClient` (CLI) and `AsyncAdminClient` (console) run these, so the two cannot drift.
May import api.admin.protocol, records and pydantic only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

from appliance.api.admin.protocol import (
    ApiKeyPublic,
    AuditQuery,
    AuditRecord,
    DaemonSettings,
    DaemonStatus,
    Exported,
    GoldenAnswer,
    HookRunInfo,
    HostStats,
    KeyCreated,
    LogLine,
    ModelRemoved,
    Restarting,
    SettingsSaved,
    SetupDone,
)
from appliance.records import (
    Accelerator,
    CatalogVerdict,
    DeviceTelemetry,
    FitPlan,
    ImportableFile,
    KeyLimits,
    LoadedModel,
    ModelInfo,
    Placement,
    RemovableMount,
    RuntimeReport,
    UpstreamState,
    VerifyResult,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    timeout_s: float | None = None
    """Overrides the client's read timeout (the console's status poll wants an answer fast)."""


def _list(kind: type[T]) -> Callable[[Any], list[T]]:
    return TypeAdapter(list[kind]).validate_python  # type: ignore[valid-type]


def _dict(found: Any) -> dict[str, Any]:
    return dict(found)


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", _dict, timeout_s=5.0)


def status(timeout_s: float | None = None) -> Call[DaemonStatus]:
    return Call("GET", "/admin/status", DaemonStatus.model_validate, timeout_s=timeout_s)


def host() -> Call[HostStats]:
    return Call("GET", "/admin/host", HostStats.model_validate)


def devices() -> Call[list[Accelerator]]:
    return Call("GET", "/admin/devices", _list(Accelerator))


def device_telemetry(history: bool = False) -> Call[DeviceTelemetry]:
    params = {"history": "true"} if history else {}
    return Call("GET", "/admin/devices/telemetry", DeviceTelemetry.model_validate, params)


def runtimes() -> Call[RuntimeReport]:
    return Call("GET", "/admin/devices/runtimes", RuntimeReport.model_validate)


def placements() -> Call[list[Placement]]:
    return Call("GET", "/admin/devices/placements", _list(Placement))


def models() -> Call[list[ModelInfo]]:
    return Call("GET", "/admin/models", _list(ModelInfo))


def show_model(name: str) -> Call[ModelInfo]:
    return Call("GET", f"/admin/models/{name}", ModelInfo.model_validate)


def remove_model(name: str) -> Call[ModelRemoved]:
    return Call("DELETE", f"/admin/models/{name}", ModelRemoved.model_validate)


def load_model(name: str) -> Call[LoadedModel]:
    return Call("POST", f"/admin/models/{name}/load", LoadedModel.model_validate)


def pin_model(name: str, pinned: bool) -> Call[LoadedModel]:
    return Call("PUT", f"/admin/models/{name}/pin", LoadedModel.model_validate,
                json={"pinned": pinned})  # fmt: skip


def unload_model(name: str) -> Call[ModelRemoved]:
    return Call("POST", f"/admin/models/{name}/unload", ModelRemoved.model_validate)


def model_stats(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/admin/models/{name}/stats", _dict)


def verify_models(name: str | None = None) -> Call[list[VerifyResult]]:
    return Call("POST", "/admin/models/verify", _list(VerifyResult), json={"name": name})


def export_model(name: str, path: Path) -> Call[Exported]:
    body = {"path": str(path.absolute())}
    return Call("POST", f"/admin/models/{name}/export", Exported.model_validate, json=body)


def fit_model(name: str, context: int = 4096, parallel: int = 1) -> Call[FitPlan]:
    params = {"context": context, "parallel": parallel}
    return Call("GET", f"/admin/models/{name}/fit", FitPlan.model_validate, params)


def catalog(context: int = 4096, parallel: int = 1) -> Call[list[CatalogVerdict]]:
    params = {"context": context, "parallel": parallel}
    return Call("GET", "/admin/catalog", _list(CatalogVerdict), params)


def media() -> Call[list[RemovableMount]]:
    return Call("GET", "/admin/media", _list(RemovableMount))


def media_files(path: Path) -> Call[list[ImportableFile]]:
    # Absolute: the daemon has another working folder.
    params = {"path": str(path.absolute())}
    return Call("GET", "/admin/media/files", _list(ImportableFile), params)


def set_chat_template(name: str, template: str | None) -> Call[ModelInfo]:
    body = {"template": template}
    return Call("PUT", f"/admin/models/{name}/template", ModelInfo.model_validate, json=body)


def golden_prompt(model: str | None = None) -> Call[GoldenAnswer]:
    """The doctor's golden prompt through the daemon's chat path (a model load may come first)."""
    return Call("POST", "/admin/golden-prompt", GoldenAnswer.model_validate, json={"model": model})


def keys() -> Call[list[ApiKeyPublic]]:
    return Call("GET", "/admin/keys", _list(ApiKeyPublic))


def create_key(name: str | None, scope: str, reasoning_format: str | None) -> Call[KeyCreated]:
    body = {"name": name, "scope": scope, "reasoning_format": reasoning_format}
    return Call("POST", "/admin/keys", KeyCreated.model_validate, json=body)


def update_key(name_or_id: str, reasoning_format: str | None) -> Call[ApiKeyPublic]:
    body = {"reasoning_format": reasoning_format}
    return Call("PATCH", f"/admin/keys/{name_or_id}", ApiKeyPublic.model_validate, json=body)


def revoke_key(name_or_id: str) -> Call[ApiKeyPublic]:
    return Call("DELETE", f"/admin/keys/{name_or_id}", ApiKeyPublic.model_validate)


def settings() -> Call[DaemonSettings]:
    return Call("GET", "/admin/config", DaemonSettings.model_validate)


def change_settings(changes: dict[str, Any]) -> Call[SettingsSaved]:
    """Validate and save; `None` or "" for a key drops its earlier change."""
    return Call("PATCH", "/admin/config", SettingsSaved.model_validate, json={"changes": changes})


def setup_done(done: SetupDone) -> Call[SetupDone]:
    return Call("POST", "/admin/setup", SetupDone.model_validate, json=done.model_dump())


def restart() -> Call[Restarting]:
    return Call("POST", "/admin/restart", Restarting.model_validate)


def logs(after: int = 0, level: str = "INFO", limit: int = 500) -> Call[list[LogLine]]:
    params = {"after": after, "level": level, "limit": limit}
    return Call("GET", "/admin/logs", _list(LogLine), params)


def hook_runs() -> Call[list[HookRunInfo]]:
    return Call("GET", "/admin/hooks", _list(HookRunInfo))


def set_key_limits(name_or_id: str, limits: KeyLimits) -> Call[ApiKeyPublic]:
    body = {"limits": limits.model_dump(mode="json")}
    return Call("PATCH", f"/admin/keys/{name_or_id}", ApiKeyPublic.model_validate, json=body)


def audit(query: AuditQuery) -> Call[list[AuditRecord]]:
    return Call("GET", "/admin/audit", _list(AuditRecord), query.model_dump(exclude_none=True))


def import_body(source: Path | str, name: str | None, sha256: str | None) -> dict[str, Any]:
    """The import request for a path (made absolute: the daemon has another cwd) or a URL."""
    text = str(source)
    where = (
        {"url": text}
        if text.startswith(("http://", "https://"))
        else {"path": str(Path(source).absolute())}
    )
    return {**where, "name": name, "sha256": sha256}


def upstreams() -> Call[list[UpstreamState]]:
    return Call("GET", "/admin/upstreams", _list(UpstreamState))


def add_upstream(body: dict[str, Any]) -> Call[UpstreamState]:
    # Adding checks the server once before answering: allow for its connect timeout.
    return Call("POST", "/admin/upstreams", UpstreamState.model_validate, json=body)


def remove_upstream(name: str, url: str | None = None) -> Call[list[UpstreamState]]:
    params = {"url": url} if url else {}
    return Call("DELETE", f"/admin/upstreams/{name}", _list(UpstreamState), params=params)
