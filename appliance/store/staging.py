"""The registry's staging interface: all an importer (folder, bundle, URL) may ask of the store.

An importer stages bytes in a temp path inside `models/` and hands them over; the registry
(`store.models.ModelStore`) implements this and never imports an importer, so the store has no
import cycle. Imports pydantic, `appliance.errors`, `appliance.records` and `gguf_meta` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from appliance.errors import StorageError
from appliance.records import ModelFormat, ModelInfo
from appliance.store.gguf_meta import ModelMetadata


class ImportResult(BaseModel):
    model: ModelInfo
    created: bool
    """False when the same file was already registered under this name (nothing changed)."""


class Staging(Protocol):
    models_dir: Path

    def get(self, name: str) -> ModelInfo:
        """The registered model (ModelNotFound naming the installed ones)."""
        ...

    def new_partial(self, tag: str = "") -> Path:
        """A fresh temp path in `models/`, removed at start if its process died."""
        ...

    def check_room(self, what: str, total: int) -> None:
        """StorageError when `total` bytes (plus a margin) do not fit beside the models."""
        ...

    def storage_error(self, exc: OSError, what: str, total: int) -> StorageError:
        """The one-line error for a failed write (disk full: how much is missing)."""
        ...

    def commit_and_register(
        self,
        partial: Path,
        name: str,
        digest: str,
        size: int,
        meta: ModelMetadata,
        *,
        source: str,
        fmt: ModelFormat = ModelFormat.GGUF,
        expected_sha256: str | None = None,
        catalog_id: str | None = None,
    ) -> ImportResult:
        """Move a complete, fsynced temp file or folder to its blob and register it."""
        ...
