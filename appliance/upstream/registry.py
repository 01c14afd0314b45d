"""The configured upstreams: `<state_dir>/upstreams.json`, the one place they are kept.

Written only by the daemon (the admin API's `upstream add|rm`), atomically (a temporary file
in the same folder, fsync, rename) and with mode 0600, because it holds the upstreams' API
keys. Several entries may share a name: they are replicas of one model, load-balanced.
May import records and errors only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from appliance.errors import StorageError, UsageError
from appliance.records import UpstreamEndpoint

FILE_NAME = "upstreams.json"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


class UpstreamSpec(BaseModel):
    """One upstream endpoint as stored, secret included (never sent to a client)."""

    name: str
    url: str
    model: str = ""
    api_key: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    max_streams: int = Field(default=16, ge=1, le=4096)

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    def public(self) -> UpstreamEndpoint:
        return UpstreamEndpoint(
            name=self.name, url=self.url, model=self.model, has_api_key=bool(self.api_key),
            verify_tls=self.verify_tls, ca_file=self.ca_file, max_streams=self.max_streams,
        )  # fmt: skip


def normalise_url(url: str) -> str:
    """The OpenAI base URL of an upstream: `http(s)://host[:port]/path`, no trailing slash.

    A bare `http://host:port` gets `/v1`, where vLLM, MindIE, llama-server and the appliance
    all serve their OpenAI API; any other path is taken as given.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"upstream URL {url!r} is not an http(s) URL; give the server's OpenAI base URL, "
            "e.g. http://10.0.0.5:8000/v1"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"upstream URL {url!r} must not have a query or fragment")
    path = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def check_name(name: str) -> str:
    name = name.strip()
    if not name or not set(name) <= NAME_CHARS or len(name) > 200:
        raise UsageError(
            f"upstream name {name!r} is not valid: use letters, digits and - _ . : / "
            "(it is the model name clients send)"
        )
    return name


class _File(BaseModel):
    upstreams: list[UpstreamSpec] = Field(default_factory=list)


class UpstreamRegistry:
    """Reads and writes the upstreams file; every change rewrites it whole."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE_NAME

    def load(self) -> list[UpstreamSpec]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StorageError(f"cannot read {self.path}: {error.strerror or error}") from None
        try:
            return _File.model_validate(json.loads(text)).upstreams
        except (ValueError, ValidationError) as error:
            first = str(error).splitlines()[0]
            raise StorageError(
                f"{self.path} is not a valid upstreams file ({first}); fix or remove it, "
                "then add the upstreams again with `appliance upstream add`"
            ) from None

    def save(self, specs: list[UpstreamSpec]) -> None:
        data = json.dumps(_File(upstreams=specs).model_dump(), indent=2) + "\n"
        temporary = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600 from the start: the API keys are never readable by others, not even briefly.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot write {self.path}: {error.strerror or error}") from None
