"""The model registry: the `models` table and the model files under `<state_dir>/models`.

Imports only `appliance.records`, `appliance.errors` and the store's leaf modules (db, blobs,
gguf_meta, names, staging), never an importer: the ONNX, bundle and URL importers use the
registry through its staging interface (`staging.Staging`), and `importing.py`, above them all,
decides which importer takes a source. The API, CLI and engine manager are its clients.

Blobs are content-addressed (`models/blobs/sha256-<hex>.gguf`, or a `.onnx` folder): bytes
imported under two names are stored once, and `verify` can re-hash against the name. Every
import (local GGUF file here; folder, URL download and bundle through staging) ends the same
way: the bytes sit complete and fsynced in a temp path inside `models/` (same filesystem, so
the rename is atomic), `commit_and_register` renames them to the blob path, and only then is the
row inserted. A failure at any step leaves neither a temp file nor a row behind.
"""

from __future__ import annotations

import builtins
import errno
import json
import logging
import os
import secrets
import shutil
import sqlite3
import time
from pathlib import Path

from appliance.chat_template import check_template
from appliance.errors import (
    Conflict,
    ModelFormatError,
    ModelNotFound,
    NotFound,
    StorageError,
    UsageError,
)
from appliance.records import ModelFormat, ModelInfo, ModelShape, VerifyResult
from appliance.store import blobs
from appliance.store.blobs import Progress
from appliance.store.db import Database
from appliance.store.gguf_meta import ModelMetadata, read_gguf_metadata
from appliance.store.names import check_model_name, default_model_name
from appliance.store.staging import ImportResult

log = logging.getLogger(__name__)

# Room left over after an import, so the database and the journal can still be written.
FREE_SPACE_MARGIN_BYTES = 64 * 1024 * 1024
PARTIAL_PREFIX = ".import-"
PARTIAL_SUFFIX = ".partial"

__all__ = ["ImportResult", "ModelStore", "Progress", "VerifyResult"]


class ModelStore:
    """Imports, lists, removes and verifies models under `state_dir`.

    Safe to share between threads (the database connection is behind a lock; copies and
    hashes run outside it). Annotations below say `builtins.list` because `list` is a method.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.models_dir = self.state_dir / "models"
        self.blobs_dir = self.models_dir / "blobs"
        self._db = Database(self.state_dir / "appliance.db")
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._db.close()
            raise StorageError(
                f"cannot create the models directory {self.blobs_dir}: {exc.strerror or exc}"
            ) from None
        self._remove_stale_partials()

    def close(self) -> None:
        self._db.close()

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[ModelInfo]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM models ORDER BY name").fetchall()
        return [self._info(row) for row in rows]

    def get(self, name: str) -> ModelInfo:
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise self._not_found(name)
        return self._info(row)

    # -- importing -------------------------------------------------------------------------

    def import_file(
        self,
        src: Path,
        name: str | None = None,
        *,
        source: str = "",
        progress: Progress | None = None,
        sha256: str | None = None,
        catalog_id: str | None = None,
    ) -> ImportResult:
        """Copy a GGUF file into the store and register it as `name` (default: from the file name).

        The header is checked before anything is copied. Importing the same file under the same
        name again changes nothing (`created=False`); a different file under a taken name is a
        Conflict. `sha256`, when given, must match the file's. `source` records its origin.
        """
        src = Path(src)
        if not src.exists():
            raise NotFound(f"model file {src} does not exist")
        name = check_model_name(name) if name is not None else default_model_name(src)
        meta = self._check_gguf(src)
        total = src.stat().st_size
        self._refuse_taken_size(name, total)
        free = shutil.disk_usage(self.models_dir).free
        if free < total + FREE_SPACE_MARGIN_BYTES:
            # No room for a copy; but if these very bytes are already stored, none is needed.
            digest = blobs.hash_file(src, total, progress)
            if self.blob_path(digest, ModelFormat.GGUF).exists():
                return self._register_checked(
                    name, digest, total, meta, source or str(src), sha256, ModelFormat.GGUF,
                    catalog_id, created_blob=False,
                )  # fmt: skip
            raise blobs.disk_full(str(src), self.models_dir, total, free)
        partial = self.new_partial()
        try:
            digest = blobs.copy_hashing(src, partial, total, progress)
            return self.commit_and_register(
                partial, name, digest, total, meta, source=source or str(src.absolute()),
                expected_sha256=sha256, catalog_id=catalog_id,
            )  # fmt: skip
        except OSError as exc:
            raise self.storage_error(exc, str(src), total) from None
        finally:
            blobs.remove_tree(partial)

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
        """Move a complete, fsynced temp file or folder inside `models/` to its blob; register it.

        Used by every import path. The temp path is consumed (or left for the caller to delete
        when this raises).
        """
        _check_digest(digest, expected_sha256, source)
        blob = self.blob_path(digest, fmt)
        created_blob = False
        if not blob.exists():
            blobs.seal(partial)
            os.replace(partial, blob)
            blobs.fsync_dir(self.blobs_dir)
            created_blob = True
        return self._register_checked(
            name, digest, size, meta, source, None, fmt, catalog_id, created_blob=created_blob
        )

    def _register_checked(
        self, name: str, digest: str, size: int, meta: ModelMetadata, source: str,
        expected: str | None, fmt: ModelFormat, catalog_id: str | None, *, created_blob: bool,
    ) -> ImportResult:  # fmt: skip
        _check_digest(digest, expected, source)
        try:
            return self._register(name, digest, size, meta, source, fmt, catalog_id)
        except BaseException:
            if created_blob:
                with self._db.write() as conn:
                    self._unlink_if_unreferenced(conn, digest, self.blob_path(digest, fmt))
            raise

    def _register(
        self, name: str, digest: str, size: int, meta: ModelMetadata, source: str,
        fmt: ModelFormat, catalog_id: str | None,
    ) -> ImportResult:  # fmt: skip
        blob = self.blob_path(digest, fmt)
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row["sha256"] != digest:
                    raise _conflict(name)
                return ImportResult(model=self._info(row), created=False)
            # Checked under the write lock: a concurrent `remove` deletes blobs under it too.
            if not blob.exists():
                raise StorageError(f"{blob} vanished during the import; import again")
            shape = meta.shape.model_dump_json() if meta.shape else None
            conn.execute(
                "INSERT INTO models (name, format, path, sha256, size_bytes, architecture,"
                " parameter_count, quantization, context_length, chat_template, bos_token,"
                " eos_token, source, imported_at, tensor_types, special_tokens, shape,"
                " catalog_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    name, fmt.value, str(blob.relative_to(self.models_dir)), digest, size,
                    meta.architecture, meta.parameter_count, meta.quantization,
                    meta.context_length, meta.chat_template, meta.bos_token, meta.eos_token,
                    source, time.time(), json.dumps(meta.tensor_types),
                    json.dumps(meta.special_tokens, ensure_ascii=False), shape, catalog_id,
                ),
            )  # fmt: skip
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        return ImportResult(model=self._info(row), created=True)

    def new_partial(self, tag: str = "") -> Path:
        """A fresh temp path in `models/`, removed at start if its process died."""
        token = f"{os.getpid()}-{secrets.token_hex(6)}{tag}"
        return self.models_dir / f"{PARTIAL_PREFIX}{token}{PARTIAL_SUFFIX}"

    def check_room(self, what: str, total: int) -> None:
        free = shutil.disk_usage(self.models_dir).free
        if free < total + FREE_SPACE_MARGIN_BYTES:
            raise blobs.disk_full(what, self.models_dir, total, free)

    def _check_gguf(self, src: Path) -> ModelMetadata:
        meta = read_gguf_metadata(src)
        if meta.split_count > 1:
            raise ModelFormatError(
                f"{src} is one part of a model split into {meta.split_count} files; split "
                "models are not supported yet (merge them with `llama-gguf-split --merge`)"
            )
        return meta

    def _refuse_taken_size(self, name: str, total: int) -> None:
        with self._db.read() as conn:
            taken = conn.execute("SELECT size_bytes FROM models WHERE name = ?", (name,)).fetchone()
        if taken is not None and taken["size_bytes"] != total:
            raise _conflict(name)  # a different size is a different file: no need to hash

    def storage_error(self, exc: OSError, what: str, total: int) -> StorageError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(self.models_dir).free
            return blobs.disk_full(what, self.models_dir, total, free)
        return StorageError(
            f"could not import {what} into {self.models_dir}: {exc.strerror or exc}"
        )

    # -- removing and verifying ------------------------------------------------------------

    def remove(self, name: str) -> ModelInfo:
        """Unregister `name`; delete its file unless another name still uses it."""
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise self._not_found(name)
            conn.execute("DELETE FROM models WHERE name = ?", (name,))
            self._unlink_if_unreferenced(conn, row["sha256"], self.models_dir / row["path"])
        return self._info(row)

    def set_chat_template(self, name: str, template: str | None) -> ModelInfo:
        """Use `template` instead of the file's own chat template; None restores the file's."""
        if template is not None:
            check_template(template)  # refuse a broken template now, not at the first chat
        with self._db.write() as conn:
            found = conn.execute(
                "UPDATE models SET chat_template_override = ? WHERE name = ?", (template, name)
            ).rowcount
        if not found:
            raise self._not_found(name)
        return self.get(name)

    def verify(self, name: str | None = None) -> builtins.list[VerifyResult]:
        """Re-hash the files of one model (or all) and compare with the registry."""
        models = [self.get(name)] if name is not None else self.list()
        hashed: dict[str, str] = {}  # names that share a blob hash it once
        return [_verify_one(model, hashed) for model in models]

    # -- helpers ---------------------------------------------------------------------------

    def blob_path(self, digest: str, fmt: ModelFormat = ModelFormat.GGUF) -> Path:
        return self.blobs_dir / f"sha256-{digest}.{fmt.value}"

    def _info(self, row: sqlite3.Row) -> ModelInfo:
        data = dict(row)
        data["path"] = str(self.models_dir / data["path"])
        data["tensor_types"] = json.loads(data["tensor_types"] or "{}")
        data["special_tokens"] = json.loads(data["special_tokens"] or "[]")
        data["shape"] = ModelShape.model_validate_json(data["shape"]) if data["shape"] else None
        override = data.pop("chat_template_override", None)
        if override is not None:
            data["chat_template"] = override
            data["chat_template_overridden"] = True
        return ModelInfo(**data)

    def _not_found(self, name: str) -> ModelNotFound:
        names = [model.name for model in self.list()]
        if not names:
            return ModelNotFound(
                f"model '{name}' is not installed; no models are installed yet "
                "(import one with `appliance models import FILE`)"
            )
        return ModelNotFound(f"model '{name}' is not installed; installed: {', '.join(names)}")

    @staticmethod
    def _unlink_if_unreferenced(conn: sqlite3.Connection, digest: str, path: Path) -> None:
        # Runs inside the caller's write transaction, so no import can register this blob
        # between the count and the unlink (see the existence check in `_register`).
        refs = conn.execute("SELECT COUNT(*) FROM models WHERE sha256 = ?", (digest,)).fetchone()
        if refs[0] == 0:
            blobs.remove_tree(path)
            if path.exists():
                log.warning("could not delete the unused model file %s", path)

    def _remove_stale_partials(self) -> None:
        """Delete temp files left by imports whose process died (kill -9, power cut)."""
        for partial in self.models_dir.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            pid_text = partial.name.removeprefix(PARTIAL_PREFIX).split("-", 1)[0]
            if pid_text.isdigit() and not _process_alive(int(pid_text)):
                blobs.remove_tree(partial)


def _verify_one(model: ModelInfo, hashed: dict[str, str]) -> VerifyResult:
    path = Path(model.path)
    if not path.exists():
        return VerifyResult(name=model.name, ok=False, detail=f"missing: {path}")
    if path.is_dir():
        try:
            digest, _files, size = blobs.hash_folder(path)
        except (OSError, UsageError) as exc:
            return VerifyResult(name=model.name, ok=False, detail=f"{path} is damaged: {exc}")
        hashed[model.path] = digest
    else:
        size = path.stat().st_size
    if size != model.size_bytes:
        detail = f"size {size:,} bytes, expected {model.size_bytes:,}: {path} is damaged"
        return VerifyResult(name=model.name, ok=False, detail=detail)
    if model.path not in hashed:
        hashed[model.path] = blobs.hash_file(path, size, None)
    if hashed[model.path] == model.sha256:
        return VerifyResult(name=model.name, ok=True, detail="sha256 matches")
    detail = (
        f"sha256 {hashed[model.path][:16]}… differs from the recorded {model.sha256[:16]}…: "
        f"{path} is damaged; remove the model and import it again"
    )
    return VerifyResult(name=model.name, ok=False, detail=detail)


def _check_digest(digest: str, expected: str | None, source: str) -> None:
    if expected and digest != expected.lower():
        raise ModelFormatError(
            f"{source}: sha256 {digest} does not match the expected {expected.lower()}; the "
            "file is damaged or not the one you meant, so nothing was imported"
        )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _conflict(name: str) -> Conflict:
    return Conflict(
        f"model '{name}' already exists with a different file; remove it first with "
        f"`appliance models rm {name}`"
    )
