"""FastAPI dependencies shared by the routes: the services, and API-key checks.

Keys arrive as `Authorization: Bearer KEY` (OpenAI clients) or `X-API-Key: KEY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from appliance.api import accounting
from appliance.errors import AuthenticationError, PermissionDenied
from appliance.records import KeyLimits
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
    key_id: int | None = None
    limits: KeyLimits | None = None


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
    usage = accounting.current()
    if usage is not None:  # for the audit log, the metrics and the key's limits
        usage.key_id, usage.key_name, usage.limits = info.id, info.name, info.limits
    return Caller(info.scope, info.name, info.reasoning_format, info.id, info.limits)


CallerDep = Annotated[Caller, Depends(require_api_key)]


def require_admin_key(request: Request, caller: CallerDep) -> None:
    """Admin routes on the LAN listener need TLS and an admin-scoped key (the socket needs
    neither): an admin key sent in clear text would hand the box to anyone listening."""
    if request.url.scheme != "https":
        raise PermissionDenied(
            "admin operations over the network need TLS (set tls.mode to self-signed or "
            "files); on the box itself, use the admin socket (`appliance ...`)"
        )
    if caller.scope != "admin":
        raise PermissionDenied(
            "this operation needs an admin-scoped API key or the admin socket on the box"
        )


def on_admin_socket(request: Request) -> bool:
    """True on the Unix-socket listener, whose file mode is the authorisation."""
    return not getattr(request.app.state, "lan", False)


def require_admin_socket(request: Request) -> None:
    """Routes that name files on the box (import or export by path, media listings) never run
    for a LAN caller, whatever its key: only someone on the box may reach its disks."""
    if not on_admin_socket(request):
        raise PermissionDenied(
            "this operation reads or writes paths on the box's disks, so it runs only over "
            "the admin socket on the box (`appliance models ...` there); over the network, "
            "import from a URL instead"
        )


ApiKeyDep = Depends(require_api_key)
AdminKeyDep = Depends(require_admin_key)
AdminSocketDep = Depends(require_admin_socket)
