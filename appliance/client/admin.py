"""AdminClient / AsyncAdminClient: typed calls to the admin API over the Unix socket.

Transport errors become `DaemonUnreachable` (naming the socket and how to start the daemon);
error envelopes become the matching `ApplianceError` subclass, so callers handle one tree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from appliance import errors
from appliance.api.admin.protocol import (
    ApiKeyPublic,
    DaemonStatus,
    Exported,
    GoldenAnswer,
    ImportProgress,
    KeyCreated,
    ModelRemoved,
)
from appliance.records import (
    Accelerator,
    CatalogVerdict,
    DeviceTelemetry,
    FitPlan,
    ImportableFile,
    LoadedModel,
    ModelInfo,
    Placement,
    RemovableMount,
    RuntimeReport,
    VerifyResult,
)

# Requests that only read state answer fast; loads and imports can take minutes.
_TIMEOUT = httpx.Timeout(10.0, read=600.0)
_BASE = "http://appliance"

_ERRORS_BY_CODE: dict[str, type[errors.ApplianceError]] = {}
for _cls in (
    errors.UsageError, errors.ModelFormatError, errors.AuthenticationError,
    errors.PermissionDenied, errors.NotFound, errors.ModelNotFound, errors.Conflict,
    errors.StorageError, errors.EngineError, errors.ModelLoading, errors.EngineDead,
    errors.Overloaded, errors.ConfigError,
):  # fmt: skip
    _ERRORS_BY_CODE[_cls.code] = _cls


def error_from_code(code: str | None, message: str) -> errors.ApplianceError:
    return _ERRORS_BY_CODE.get(code or "", errors.ApplianceError)(message)


def _unreachable(socket_path: Path, exc: Exception) -> errors.DaemonUnreachable:
    if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
        return errors.DaemonUnreachable(
            f"no permission to use the admin socket {socket_path}; run as root or join the "
            "appliance-admin group"
        )
    return errors.DaemonUnreachable(
        f"the appliance daemon is not running (no answer on {socket_path}); start it with "
        "`systemctl start ai-appliance` or `appliance serve`"
    )


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        raise error_from_code(body.get("code"), body.get("message", response.text))
    except (ValueError, KeyError, TypeError):
        raise errors.ApplianceError(
            f"daemon answered {response.status_code}: {response.text}"
        ) from None


class AdminClient:
    """Blocking client, for the CLI."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)), base_url=_BASE, timeout=_TIMEOUT
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError, OSError) as exc:
            raise _unreachable(self.socket_path, exc) from None
        _raise_for(response)
        return response.json()

    def is_running(self) -> bool:
        try:
            self._call("GET", "/health")
        except errors.DaemonUnreachable:
            return False
        return True

    def status(self) -> DaemonStatus:
        return DaemonStatus.model_validate(self._call("GET", "/admin/status"))

    def devices(self) -> list[Accelerator]:
        return TypeAdapter(list[Accelerator]).validate_python(self._call("GET", "/admin/devices"))

    def device_telemetry(self, history: bool = False) -> DeviceTelemetry:
        params = {"history": "true"} if history else {}
        return DeviceTelemetry.model_validate(
            self._call("GET", "/admin/devices/telemetry", params=params)
        )

    def runtimes(self) -> RuntimeReport:
        return RuntimeReport.model_validate(self._call("GET", "/admin/devices/runtimes"))

    def placements(self) -> list[Placement]:
        return TypeAdapter(list[Placement]).validate_python(
            self._call("GET", "/admin/devices/placements")
        )

    def models(self) -> list[ModelInfo]:
        return TypeAdapter(list[ModelInfo]).validate_python(self._call("GET", "/admin/models"))

    def show_model(self, name: str) -> ModelInfo:
        return ModelInfo.model_validate(self._call("GET", f"/admin/models/{name}"))

    def remove_model(self, name: str) -> ModelRemoved:
        return ModelRemoved.model_validate(self._call("DELETE", f"/admin/models/{name}"))

    def load_model(self, name: str) -> LoadedModel:
        return LoadedModel.model_validate(self._call("POST", f"/admin/models/{name}/load"))

    def import_model(
        self,
        path: Path | str,
        name: str | None = None,
        on_progress: Callable[[ImportProgress], None] | None = None,
        *,
        sha256: str | None = None,
    ) -> ImportProgress:
        """Import a path or http(s) URL through the daemon; returns the final `done` line."""
        final: ImportProgress | None = None
        text = str(path)
        source = (
            {"url": text}
            if text.startswith(("http://", "https://"))
            else {"path": str(Path(path).absolute())}
        )
        for line in self._stream_lines(
            "/admin/models/import", {**source, "name": name, "sha256": sha256}
        ):
            final = ImportProgress.model_validate(line)
            if final.status in ("copying", "downloading") and on_progress:
                on_progress(final)
        if final is None:
            raise errors.ApplianceError("the daemon ended the import without a result")
        if final.status == "error":
            raise error_from_code(final.error_code, final.error or "import failed")
        return final

    def _stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx.ConnectError, OSError) as exc:
            raise _unreachable(self.socket_path, exc) from None

    def model_stats(self, name: str) -> dict[str, Any]:
        """The engine's live counters for a loaded model (slots, queue, prefix-cache hits)."""
        return dict(self._call("GET", f"/admin/models/{name}/stats"))

    def verify_models(self, name: str | None = None) -> list[VerifyResult]:
        found = self._call("POST", "/admin/models/verify", json={"name": name})
        return TypeAdapter(list[VerifyResult]).validate_python(found)

    def export_model(self, name: str, path: Path) -> Exported:
        body = {"path": str(path.absolute())}
        return Exported.model_validate(
            self._call("POST", f"/admin/models/{name}/export", json=body)
        )

    def fit_model(self, name: str, context: int = 4096, parallel: int = 1) -> FitPlan:
        params = {"context": context, "parallel": parallel}
        return FitPlan.model_validate(self._call("GET", f"/admin/models/{name}/fit", params=params))

    def catalog(self, context: int = 4096, parallel: int = 1) -> list[CatalogVerdict]:
        found = self._call(
            "GET", "/admin/catalog", params={"context": context, "parallel": parallel}
        )
        return TypeAdapter(list[CatalogVerdict]).validate_python(found)

    def media(self) -> list[RemovableMount]:
        return TypeAdapter(list[RemovableMount]).validate_python(self._call("GET", "/admin/media"))

    def media_files(self, path: Path) -> list[ImportableFile]:
        found = self._call("GET", "/admin/media/files", params={"path": str(path)})
        return TypeAdapter(list[ImportableFile]).validate_python(found)

    def golden_prompt(self, model: str | None = None) -> GoldenAnswer:
        body = {"model": model}
        return GoldenAnswer.model_validate(self._call("POST", "/admin/golden-prompt", json=body))

    def keys(self) -> list[ApiKeyPublic]:
        return TypeAdapter(list[ApiKeyPublic]).validate_python(self._call("GET", "/admin/keys"))

    def create_key(
        self, name: str | None, scope: str, reasoning_format: str | None = None
    ) -> KeyCreated:
        body = {"name": name, "scope": scope, "reasoning_format": reasoning_format}
        return KeyCreated.model_validate(self._call("POST", "/admin/keys", json=body))

    def update_key(self, name_or_id: str, reasoning_format: str | None) -> ApiKeyPublic:
        body = {"reasoning_format": reasoning_format}
        return ApiKeyPublic.model_validate(
            self._call("PATCH", f"/admin/keys/{name_or_id}", json=body)
        )

    def set_chat_template(self, name: str, template: str | None) -> ModelInfo:
        body = {"template": template}
        return ModelInfo.model_validate(
            self._call("PUT", f"/admin/models/{name}/template", json=body)
        )

    def revoke_key(self, name_or_id: str) -> ApiKeyPublic:
        return ApiKeyPublic.model_validate(self._call("DELETE", f"/admin/keys/{name_or_id}"))


class AsyncAdminClient:
    """Non-blocking client, for the TUI's workers."""

    def __init__(
        self, socket_path: Path, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.socket_path = socket_path
        self._http = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url=_BASE,
            timeout=_TIMEOUT,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError, OSError) as exc:
            raise _unreachable(self.socket_path, exc) from None
        _raise_for(response)
        return response.json()

    async def status(self) -> DaemonStatus:
        return DaemonStatus.model_validate(await self._call("GET", "/admin/status"))

    async def devices(self) -> list[Accelerator]:
        return TypeAdapter(list[Accelerator]).validate_python(
            await self._call("GET", "/admin/devices")
        )

    async def device_telemetry(self, history: bool = False) -> DeviceTelemetry:
        params = {"history": "true"} if history else {}
        return DeviceTelemetry.model_validate(
            await self._call("GET", "/admin/devices/telemetry", params=params)
        )
