"""The model store: the `models` registry table and the model files under `<state_dir>/models`.

Imports only `appliance.records`, `appliance.errors` and the store's own modules; the API, CLI and
engine manager are its clients, never the other way round.

Files are content-addressed (`models/blobs/sha256-<hex>.gguf`): a file imported under two names
is stored once, and `verify` can re-hash against the name. An import copies into a temp file in
the models dir (same filesystem, so the final rename is atomic), fsyncs, renames, and only then
inserts the row; a failure at any step leaves neither a temp file nor a row behind. Later import
paths (URL download, USB, bundles) should end in `_store_blob` + `_register` the same way.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from appliance.errors import (
    Conflict,
    ModelFormatError,
    ModelNotFound,
    NotFound,
    StorageError,
    UsageError,
)
from appliance.records import ModelFormat, ModelInfo
from appliance.store.db import Database
from appliance.store.gguf_meta import GGUFMetadata, read_gguf_metadata

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
CHUNK_BYTES = 8 * 1024 * 1024
GIB = 1024**3
# Room left over after an import, so the database and the journal can still be written.
FREE_SPACE_MARGIN_BYTES = 64 * 1024 * 1024
PARTIAL_PREFIX = ".import-"
PARTIAL_SUFFIX = ".partial"

Progress = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while a file is copied or hashed."""


class ImportResult(BaseModel):
    model: ModelInfo
    created: bool
    """False when the same file was already registered under this name (nothing changed)."""


class VerifyResult(BaseModel):
    name: str
    ok: bool
    detail: str


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"invalid model name {name!r}: use letters, digits and . - _ : (at most 128 "
            "characters, starting with a letter or digit)"
        )
    return name


def default_model_name(src: Path) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` -> `smollm2-135m-instruct.q4_1`."""
    stem = src.name.lower().removesuffix(".gguf")
    name = re.sub(r"[^a-z0-9._:-]+", "-", stem).lstrip("._:-").rstrip("._:-")[:128]
    if not name:
        raise UsageError(f"cannot make a model name from the file name {src.name!r}; give one")
    return name


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
    ) -> ImportResult:
        """Copy a GGUF file into the store and register it as `name` (default: from the file name).

        The header is checked before anything is copied. Importing the same file under the same
        name again changes nothing (`created=False`); a different file under a taken name is a
        Conflict. `source` records where the file came from (shown to administrators).
        """
        src = Path(src)
        if src.is_dir():
            raise UsageError(
                f"{src} is a directory; give a .gguf file (importing ONNX model directories "
                "is not supported yet)"
            )
        if not src.exists():
            raise NotFound(f"model file {src} does not exist")
        name = check_model_name(name) if name is not None else default_model_name(src)
        meta = read_gguf_metadata(src)
        if meta.split_count > 1:
            raise ModelFormatError(
                f"{src} is one part of a model split into {meta.split_count} files; split "
                "models are not supported yet (merge them with `llama-gguf-split --merge`)"
            )
        total = src.stat().st_size
        with self._db.read() as conn:
            taken = conn.execute("SELECT size_bytes FROM models WHERE name = ?", (name,)).fetchone()
        if taken is not None and taken["size_bytes"] != total:
            raise _conflict(name)  # a different size is a different file: no need to hash
        digest, created_blob = self._store_blob(src, total, progress)
        try:
            return self._register(name, digest, total, meta, source or str(src.absolute()))
        except BaseException:
            if created_blob:
                self._drop_blob_if_unreferenced(digest)
            raise

    def _store_blob(self, src: Path, total: int, progress: Progress | None) -> tuple[str, bool]:
        """Put the file's bytes at its blob path; return (sha256, whether the blob is new)."""
        free = shutil.disk_usage(self.models_dir).free
        if free < total + FREE_SPACE_MARGIN_BYTES:
            # No room for a copy; but if these very bytes are already stored, none is needed.
            digest = _hash_file(src, total, progress)
            if self._blob_path(digest).exists():
                return digest, False
            raise _disk_full(src, self.models_dir, total, free)
        partial = self.models_dir / f"{PARTIAL_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        partial = partial.with_name(partial.name + PARTIAL_SUFFIX)
        try:
            digest = _copy_hashing(src, partial, total, progress)
            blob = self._blob_path(digest)
            if blob.exists():
                return digest, False
            partial.chmod(0o444)  # blobs are immutable; a stray write should fail loudly
            os.replace(partial, blob)
            _fsync_dir(self.blobs_dir)
            return digest, True
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                free = shutil.disk_usage(self.models_dir).free
                raise _disk_full(src, self.models_dir, total, free) from None
            raise StorageError(
                f"could not import {src} into {self.models_dir}: {exc.strerror or exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    def _register(
        self, name: str, digest: str, size: int, meta: GGUFMetadata, source: str
    ) -> ImportResult:
        blob = self._blob_path(digest)
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row["sha256"] != digest:
                    raise _conflict(name)
                return ImportResult(model=self._info(row), created=False)
            # Checked under the write lock: a concurrent `remove` deletes blobs under it too.
            if not blob.exists():
                raise StorageError(f"{blob} vanished during the import; import again")
            conn.execute(
                "INSERT INTO models (name, format, path, sha256, size_bytes, architecture,"
                " parameter_count, quantization, context_length, chat_template, bos_token,"
                " eos_token, source, imported_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    name, ModelFormat.GGUF.value, str(blob.relative_to(self.models_dir)),
                    digest, size, meta.architecture, meta.parameter_count, meta.quantization,
                    meta.context_length, meta.chat_template, meta.bos_token, meta.eos_token,
                    source, time.time(),
                ),
            )  # fmt: skip
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        return ImportResult(model=self._info(row), created=True)

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

    def verify(self, name: str | None = None) -> builtins.list[VerifyResult]:
        """Re-hash the files of one model (or all) and compare with the registry."""
        models = [self.get(name)] if name is not None else self.list()
        hashed: dict[str, str] = {}  # names that share a blob hash it once
        return [_verify_one(model, hashed) for model in models]

    # -- helpers ---------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.blobs_dir / f"sha256-{digest}.gguf"

    def _info(self, row: sqlite3.Row) -> ModelInfo:
        data = dict(row)
        data["path"] = str(self.models_dir / data["path"])
        return ModelInfo(**data)

    def _not_found(self, name: str) -> ModelNotFound:
        names = [model.name for model in self.list()]
        if not names:
            return ModelNotFound(
                f"model '{name}' is not installed; no models are installed yet "
                "(import one with `appliance models import FILE`)"
            )
        return ModelNotFound(f"model '{name}' is not installed; installed: {', '.join(names)}")

    def _drop_blob_if_unreferenced(self, digest: str) -> None:
        with self._db.write() as conn:
            self._unlink_if_unreferenced(conn, digest, self._blob_path(digest))

    @staticmethod
    def _unlink_if_unreferenced(conn: sqlite3.Connection, digest: str, path: Path) -> None:
        # Runs inside the caller's write transaction, so no import can register this blob
        # between the count and the unlink (see the existence check in `_register`).
        refs = conn.execute("SELECT COUNT(*) FROM models WHERE sha256 = ?", (digest,)).fetchone()
        if refs[0] == 0:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete the unused model file %s: %s", path, exc)

    def _remove_stale_partials(self) -> None:
        """Delete temp files left by imports whose process died (kill -9, power cut)."""
        for partial in self.models_dir.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            pid_text = partial.name.removeprefix(PARTIAL_PREFIX).split("-", 1)[0]
            if pid_text.isdigit() and not _process_alive(int(pid_text)):
                with contextlib.suppress(OSError):
                    partial.unlink()


def _verify_one(model: ModelInfo, hashed: dict[str, str]) -> VerifyResult:
    path = Path(model.path)
    if not path.is_file():
        return VerifyResult(name=model.name, ok=False, detail=f"missing: {path}")
    size = path.stat().st_size
    if size != model.size_bytes:
        detail = f"size {size:,} bytes, expected {model.size_bytes:,}: {path} is damaged"
        return VerifyResult(name=model.name, ok=False, detail=detail)
    if model.path not in hashed:
        hashed[model.path] = _hash_file(path, size, None)
    if hashed[model.path] == model.sha256:
        return VerifyResult(name=model.name, ok=True, detail="sha256 matches")
    detail = (
        f"sha256 {hashed[model.path][:16]}… differs from the recorded {model.sha256[:16]}…: "
        f"{path} is damaged; remove the model and import it again"
    )
    return VerifyResult(name=model.name, ok=False, detail=detail)


def _copy_hashing(src: Path, dest: Path, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    copied = 0
    with src.open("rb") as reader, dest.open("xb") as writer:
        while count := reader.readinto(buffer):
            digest.update(view[:count])
            writer.write(view[:count])
            copied += count
            if progress is not None:
                progress(copied, total)
        writer.flush()
        os.fsync(writer.fileno())  # the bytes are on disk before the rename makes them count
    if copied != total:
        raise UsageError(f"{src} changed size while it was imported ({copied:,} of {total:,})")
    return digest.hexdigest()


def _hash_file(path: Path, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (POSIX: the directory entry needs its own fsync)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _disk_full(src: Path, where: Path, needed: int, free: int) -> StorageError:
    return StorageError(
        f"disk full while importing {src} into {where} (needed {needed / GIB:.2f} GiB, "
        f"free {free / GIB:.2f} GiB)"
    )
