"""AdminClient / AsyncAdminClient: typed calls to the admin API over the Unix socket.

Both run the request shapes declared once in `calls.py`. Transport errors and timeouts become
`DaemonUnreachable` (naming the socket and how to start the daemon); error envelopes become the
matching `ApplianceError` subclass, so callers handle one tree.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from appliance import errors
from appliance.api.admin.protocol import (
    ApiKeyPublic,
    AuditQuery,
    AuditRecord,
    DaemonStatus,
    Exported,
    GoldenAnswer,
    HookRunInfo,
    HostStats,
    ImportProgress,
    KeyCreated,
    LogLine,
    ModelRemoved,
)
from appliance.client import calls
from appliance.client.calls import Call
from appliance.client.chat import ChatEvent, chat_body, parse_sse_line
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

# Requests that only read state answer fast; loads and imports can take minutes.
_TIMEOUT = httpx.Timeout(10.0, read=600.0)
_BASE = "http://appliance"
_TRANSPORT_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, OSError)

_ERRORS_BY_CODE: dict[str, type[errors.ApplianceError]] = {}
for _cls in (
    errors.UsageError, errors.ModelFormatError, errors.AuthenticationError,
    errors.PermissionDenied, errors.NotFound, errors.ModelNotFound, errors.Conflict,
    errors.StorageError, errors.EngineError, errors.ModelLoading, errors.EngineDead,
    errors.Overloaded, errors.ConfigError, errors.DaemonUnreachable, errors.RequestTooLarge,
    errors.NoRoom, errors.ShuttingDown, errors.RateLimited, errors.UpstreamError,
):  # fmt: skip
    _ERRORS_BY_CODE[_cls.code] = _cls


def error_from_code(code: str | None, message: str) -> errors.ApplianceError:
    return _ERRORS_BY_CODE.get(code or "", errors.ApplianceError)(message)


def not_in_admin_group(socket_path: Path) -> errors.DaemonUnreachable:
    """The socket's file mode is the authorisation: root and the appliance-admin group."""
    return errors.DaemonUnreachable(
        f"cannot use the admin socket {socket_path}: you are not in the appliance-admin group "
        "(sudo usermod -aG appliance-admin $USER, then log in again)"
    )


def _unreachable(socket_path: Path, exc: Exception) -> errors.DaemonUnreachable:
    if isinstance(exc, httpx.TimeoutException):
        return errors.DaemonUnreachable(
            f"the appliance daemon did not answer in time on {socket_path}; it may be busy "
            "or hung (`systemctl status ai-appliance` shows its state)"
        )
    if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
        return not_in_admin_group(socket_path)
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


def _request_args(call: Call[Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"params": call.params or None}
    if call.json is not None:
        args["json"] = call.json
    if call.timeout_s is not None:
        args["timeout"] = httpx.Timeout(call.timeout_s)
    return args


def _final_import(lines: list[ImportProgress]) -> ImportProgress:
    if not lines:
        raise errors.ApplianceError("the daemon ended the import without a result")
    final = lines[-1]
    if final.status == "error":
        raise error_from_code(final.error_code, final.error or "import failed")
    return final


class AdminClient:
    """Blocking client, for the CLI: over the admin socket, or over `transport` (the CLI passes
    an `InProcessTransport` serving the admin app itself when no daemon runs)."""

    def __init__(self, socket_path: Path, transport: httpx.BaseTransport | None = None) -> None:
        self.socket_path = socket_path
        self._http = httpx.Client(
            transport=transport or httpx.HTTPTransport(uds=str(socket_path)),
            base_url=_BASE,
            timeout=_TIMEOUT,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def run(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, **_request_args(call))
        except (*_TRANSPORT_ERRORS, httpx.TimeoutException) as exc:
            raise _unreachable(self.socket_path, exc) from None
        _raise_for(response)
        return call.parse(response.json())

    def is_running(self) -> bool:
        try:
            self.run(calls.health())
        except errors.DaemonUnreachable:
            return False
        return True

    def status(self) -> DaemonStatus:
        return self.run(calls.status())

    def host(self) -> HostStats:
        return self.run(calls.host())

    def devices(self) -> list[Accelerator]:
        return self.run(calls.devices())

    def device_telemetry(self, history: bool = False) -> DeviceTelemetry:
        return self.run(calls.device_telemetry(history))

    def runtimes(self) -> RuntimeReport:
        return self.run(calls.runtimes())

    def placements(self) -> list[Placement]:
        return self.run(calls.placements())

    def models(self) -> list[ModelInfo]:
        return self.run(calls.models())

    def show_model(self, name: str) -> ModelInfo:
        return self.run(calls.show_model(name))

    def remove_model(self, name: str) -> ModelRemoved:
        return self.run(calls.remove_model(name))

    def load_model(self, name: str) -> LoadedModel:
        return self.run(calls.load_model(name))

    def unload_model(self, name: str) -> ModelRemoved:
        return self.run(calls.unload_model(name))

    def import_model(
        self,
        path: Path | str,
        name: str | None = None,
        on_progress: Callable[[ImportProgress], None] | None = None,
        *,
        sha256: str | None = None,
    ) -> ImportProgress:
        """Import a path or http(s) URL through the daemon; returns the final `done` line."""
        lines: list[ImportProgress] = []
        for line in self._stream_lines(
            "/admin/models/import", calls.import_body(path, name, sha256)
        ):
            lines.append(ImportProgress.model_validate(line))
            if lines[-1].status in ("copying", "downloading") and on_progress:
                on_progress(lines[-1])
        return _final_import(lines[-1:])

    def _stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (*_TRANSPORT_ERRORS, httpx.TimeoutException) as exc:
            raise _unreachable(self.socket_path, exc) from None

    def model_stats(self, name: str) -> dict[str, Any]:
        """The engine's live counters for a loaded model (slots, queue, prefix-cache hits)."""
        return self.run(calls.model_stats(name))

    def verify_models(self, name: str | None = None) -> list[VerifyResult]:
        return self.run(calls.verify_models(name))

    def export_model(self, name: str, path: Path) -> Exported:
        return self.run(calls.export_model(name, path))

    def fit_model(self, name: str, context: int = 4096, parallel: int = 1) -> FitPlan:
        return self.run(calls.fit_model(name, context, parallel))

    def catalog(self, context: int = 4096, parallel: int = 1) -> list[CatalogVerdict]:
        return self.run(calls.catalog(context, parallel))

    def media(self) -> list[RemovableMount]:
        return self.run(calls.media())

    def media_files(self, path: Path) -> list[ImportableFile]:
        return self.run(calls.media_files(path))

    def golden_prompt(self, model: str | None = None) -> GoldenAnswer:
        return self.run(calls.golden_prompt(model))

    def keys(self) -> list[ApiKeyPublic]:
        return self.run(calls.keys())

    def upstreams(self) -> list[UpstreamState]:
        return self.run(calls.upstreams())

    def add_upstream(
        self,
        name: str,
        url: str,
        *,
        api_key: str = "",
        model: str = "",
        verify_tls: bool = True,
        ca_file: str = "",
        max_streams: int = 16,
    ) -> UpstreamState:
        body = {
            "name": name, "url": url, "api_key": api_key, "model": model,
            "verify_tls": verify_tls, "ca_file": ca_file, "max_streams": max_streams,
        }  # fmt: skip
        return self.run(calls.add_upstream(body))

    def remove_upstream(self, name: str, url: str | None = None) -> list[UpstreamState]:
        return self.run(calls.remove_upstream(name, url))

    def create_key(
        self, name: str | None, scope: str, reasoning_format: str | None = None
    ) -> KeyCreated:
        return self.run(calls.create_key(name, scope, reasoning_format))

    def update_key(self, name_or_id: str, reasoning_format: str | None) -> ApiKeyPublic:
        return self.run(calls.update_key(name_or_id, reasoning_format))

    def set_key_limits(self, name_or_id: str, limits: KeyLimits) -> ApiKeyPublic:
        return self.run(calls.set_key_limits(name_or_id, limits))

    def audit(self, query: AuditQuery) -> list[AuditRecord]:
        return self.run(calls.audit(query))

    def set_chat_template(self, name: str, template: str | None) -> ModelInfo:
        return self.run(calls.set_chat_template(name, template))

    def revoke_key(self, name_or_id: str) -> ApiKeyPublic:
        return self.run(calls.revoke_key(name_or_id))

    def logs(self, after: int = 0, level: str = "INFO", limit: int = 500) -> list[LogLine]:
        return self.run(calls.logs(after, level, limit))

    def hook_runs(self) -> list[HookRunInfo]:
        return self.run(calls.hook_runs())


class AsyncAdminClient:
    """Non-blocking client, for the console's workers. Runs the same `calls` as AdminClient;
    call `run(calls.x(...))`, or the streaming helpers for imports and chat."""

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

    async def run(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, **_request_args(call))
        except (*_TRANSPORT_ERRORS, httpx.TimeoutException) as exc:
            raise _unreachable(self.socket_path, exc) from None
        _raise_for(response)
        return call.parse(response.json())

    async def status(self, timeout_s: float | None = None) -> DaemonStatus:
        return await self.run(calls.status(timeout_s))

    async def device_telemetry(self, history: bool = False) -> DeviceTelemetry:
        return await self.run(calls.device_telemetry(history))

    async def _lines(self, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
        try:
            async with self._http.stream("POST", path, json=body) as response:
                if not response.is_success:
                    await response.aread()
                    _raise_for(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield line
        except (*_TRANSPORT_ERRORS, httpx.TimeoutException) as exc:
            raise _unreachable(self.socket_path, exc) from None

    async def import_model(
        self, source: Path | str, name: str | None = None, sha256: str | None = None
    ) -> AsyncIterator[ImportProgress]:
        """Progress lines, then the `done` line; an `error` line is raised as its error."""
        async for line in self._lines(
            "/admin/models/import", calls.import_body(source, name, sha256)
        ):
            progress = ImportProgress.model_validate_json(line)
            if progress.status == "error":
                _final_import([progress])
            yield progress

    async def chat(
        self, model: str, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Stream a chat answer from the daemon's `/v1` on this socket (no API key needed)."""
        async for line in self._lines("/v1/chat/completions", chat_body(model, messages,
                                                                        max_tokens)):  # fmt: skip
            event = parse_sse_line(line)
            if isinstance(event, dict):
                raise error_from_code(event.get("code"), str(event.get("message")))
            if event is not None:
                yield event
