"""Build the two FastAPI apps from a `Services` object; the one place errors become HTTP.

- `create_app(services)`: the LAN listener (OpenAI and Ollama APIs, health, admin behind
  admin keys). Errors on `/api/...` take Ollama's shape, all others OpenAI's.
- `create_admin_app(services)`: the Unix-socket listener (admin API, health).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from appliance import __version__
from appliance.api import health, metrics
from appliance.api.accounting import AccountingMiddleware
from appliance.api.admin import routes as admin_routes
from appliance.api.deps import AdminKeyDep
from appliance.api.ollama import convert as ollama_convert
from appliance.api.ollama import routes as ollama_routes
from appliance.api.openai import convert
from appliance.api.openai import routes as openai_routes
from appliance.errors import ApplianceError, Overloaded, UsageError
from appliance.services import Services

log = logging.getLogger("appliance.api")


def _admin_envelope(error: ApplianceError) -> dict[str, object]:
    return {"error": {"code": error.code, "message": error.message, "title": error.title}}


def _install_error_handlers(app: FastAPI, default_envelope, ollama: bool = False) -> None:  # type: ignore[no-untyped-def]
    def envelope_for(request: Request):  # type: ignore[no-untyped-def]
        if ollama and request.url.path.startswith("/api/"):
            return ollama_convert.error_body
        return default_envelope

    async def on_appliance_error(request: Request, error: Exception) -> JSONResponse:
        envelope = envelope_for(request)
        assert isinstance(error, ApplianceError)
        headers = {}
        if error.http_status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(error, Overloaded):
            headers["Retry-After"] = str(error.retry_after_s)
        return JSONResponse(envelope(error), status_code=error.http_status, headers=headers)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        envelope = envelope_for(request)
        assert isinstance(error, RequestValidationError)
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"] if p != "body") or "body"
            problems.append(f"{where}: {item['msg']}")
        usage = UsageError("invalid request: " + "; ".join(problems))
        return JSONResponse(envelope(usage), status_code=400)

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        envelope = envelope_for(request)
        log.exception("unexpected error while serving a request")
        internal = ApplianceError(
            f"internal error ({type(error).__name__}); the daemon log has the details"
        )
        return JSONResponse(envelope(internal), status_code=500)

    app.add_exception_handler(ApplianceError, on_appliance_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="AI appliance", version=__version__)
    app.state.services = services
    app.state.lan = True  # admin routes that name server paths refuse LAN callers
    _install_error_handlers(app, convert.error_body, ollama=True)
    app.include_router(health.router)
    app.include_router(openai_routes.router)
    app.include_router(ollama_routes.public)
    app.include_router(ollama_routes.router)
    if services.config.metrics.enabled and not services.config.metrics.listen:
        app.include_router(metrics.keyed_router)
    app.include_router(admin_routes.router, dependencies=[AdminKeyDep])
    app.add_middleware(AccountingMiddleware, services=services)
    return app


def create_admin_app(services: Services) -> FastAPI:
    app = FastAPI(title="AI appliance admin", version=__version__)
    app.state.services = services
    _install_error_handlers(app, _admin_envelope)
    app.include_router(health.router)
    app.include_router(admin_routes.router)
    return app
