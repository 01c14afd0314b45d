"""Build the two FastAPI apps from a `Services` object; the one place errors become HTTP.

- `create_app(services)`: the LAN listener (OpenAI API, health, admin behind admin keys).
- `create_admin_app(services)`: the Unix-socket listener (admin API, health, and `/v1` for
  the console's chat playground, keyless: the socket's file mode is the authorisation).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from appliance import __version__
from appliance.api import health
from appliance.api.admin import routes as admin_routes
from appliance.api.deps import AdminKeyDep, Caller, authenticate, require_api_key
from appliance.api.gate import RequestGate
from appliance.api.openai import convert
from appliance.api.openai import routes as openai_routes
from appliance.errors import ApplianceError, NoRoom, NotFound, Overloaded, UsageError
from appliance.services import Services

log = logging.getLogger("appliance.api")


def _admin_envelope(error: ApplianceError) -> dict[str, object]:
    return {"error": {"code": error.code, "message": error.message, "title": error.title}}


def _install_error_handlers(app: FastAPI, envelope) -> None:  # type: ignore[no-untyped-def]
    async def on_appliance_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApplianceError)
        headers = {}
        if error.http_status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(error, Overloaded | NoRoom):
            headers["Retry-After"] = str(error.retry_after_s)
        return JSONResponse(envelope(error), status_code=error.http_status, headers=headers)

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"] if p != "body") or "body"
            problems.append(f"{where}: {item['msg']}")
        usage = UsageError("invalid request: " + "; ".join(problems))
        return JSONResponse(envelope(usage), status_code=400)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        # Starlette's own refusals (unknown path, wrong method, a body that is not JSON) would
        # otherwise answer `{"detail": ...}`, not the envelope clients parse (found by fuzzing).
        assert isinstance(error, StarletteHTTPException)
        detail = error.detail if isinstance(error.detail, str) else "the request was refused"
        refusal: ApplianceError
        if error.status_code == 404:
            refusal = NotFound(f"{request.url.path}: no such endpoint")
        elif error.status_code == 400 and "parsing the body" in detail:
            refusal = UsageError("the request body is not valid JSON (UTF-8); send a JSON object")
        else:
            refusal = UsageError(detail)
            refusal.http_status = error.status_code
        return JSONResponse(
            envelope(refusal), status_code=refusal.http_status, headers=error.headers
        )

    async def on_unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        internal = ApplianceError(
            f"internal error ({type(error).__name__}); the daemon log has the details"
        )
        return JSONResponse(envelope(internal), status_code=500)

    app.add_exception_handler(ApplianceError, on_appliance_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _docs(enabled: bool) -> dict[str, str | None]:
    # The schema maps every route and field: off unless the administrator turns it on, and
    # then (on the LAN) only for key holders, since the gate guards every non-probe path.
    if enabled:
        return {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def create_app(services: Services) -> FastAPI:
    config = services.config
    app = FastAPI(title="AI appliance", version=__version__, **_docs(config.api.openapi_docs))
    app.state.services = services
    _install_error_handlers(app, convert.error_body)
    app.include_router(health.router)
    app.include_router(openai_routes.router)
    app.include_router(admin_routes.router, dependencies=[AdminKeyDep])
    app.add_middleware(
        RequestGate,
        max_body_bytes=config.limits.max_body_bytes,
        envelope=convert.error_body,
        authenticate=lambda headers: authenticate(services, headers),
    )
    return app


def create_admin_app(services: Services) -> FastAPI:
    # The socket's file mode is the authorisation, so the schema may be served here.
    app = FastAPI(title="AI appliance admin", version=__version__)
    app.state.services = services
    _install_error_handlers(app, _admin_envelope)
    app.add_middleware(
        RequestGate,
        max_body_bytes=services.config.limits.max_body_bytes,
        envelope=_admin_envelope,
    )
    app.include_router(health.router)
    app.include_router(admin_routes.router)
    # The same `/v1` routes as the LAN listener (one serving path), called as the administrator:
    # the console chats without minting an API key that would outlive the session.
    app.include_router(openai_routes.router)
    app.dependency_overrides[require_api_key] = _socket_caller
    return app


def _socket_caller() -> Caller:
    return Caller(scope="admin", key_name="admin-socket")
