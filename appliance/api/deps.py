"""FastAPI dependencies shared by the routes: the services, and API-key checks.

Keys arrive as `Authorization: Bearer KEY` (OpenAI clients) or `X-API-Key: KEY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from appliance.errors import AuthenticationError, PermissionDenied
from appliance.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _presented_key(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


@dataclass(frozen=True)
class Caller:
    """Who sent a LAN request: the key's scope and preferences (anonymous when keys are off)."""

    scope: str = "user"
    key_name: str | None = None
    reasoning_format: str | None = None


def require_api_key(request: Request, services: ServicesDep) -> Caller:
    """Admit the request if keys are off or it carries a valid key; say who is calling.

    On the LAN listener the gate (`gate.py`) has checked the key before the body was read and
    left the caller in the request state; this dependency only runs the check itself where no
    gate did.
    """
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, Caller):
        return caller
    return authenticate(services, request.headers)


def authenticate(services: Services, headers: Mapping[str, str]) -> Caller:
    """The caller named by the request's headers; AuthenticationError when there is none."""
    if not services.config.api.require_api_key:
        return Caller()
    key = _presented_key(headers)
    if key is None:
        raise AuthenticationError(
            "this appliance requires an API key: send it as 'Authorization: Bearer KEY' "
            "(ask the administrator for a key: `appliance keys create`)"
        )
    info = services.keys.authenticate(key)
    if info is None:
        raise AuthenticationError("the API key is not valid (unknown or revoked)")
    return Caller(info.scope, info.name, info.reasoning_format)


CallerDep = Annotated[Caller, Depends(require_api_key)]


def require_admin_key(caller: CallerDep) -> None:
    """Admin routes on the LAN listener need an admin-scoped key (the socket needs none)."""
    if caller.scope != "admin":
        raise PermissionDenied(
            "this operation needs an admin-scoped API key or the admin socket on the box"
        )


ApiKeyDep = Depends(require_api_key)
AdminKeyDep = Depends(require_admin_key)
