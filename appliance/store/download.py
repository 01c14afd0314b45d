"""Importing a model from a URL on the LAN: resumable HTTP(S) download, checksum, registration.

Imports `httpx`, `appliance.errors` and the store's own modules.

The partial download lives in `models/` as `.download-<hash of the URL>.part` with a small
`.json` beside it (URL, ETag, Last-Modified), and is kept when the transfer fails: importing the
same URL again (or the next retry) asks for the rest with `Range: bytes=N-`, guarded by
`If-Range` so a file changed on the server restarts from zero instead of being spliced. A
dropped connection is retried with backoff; the count of failures in a row is bounded, and any
progress resets it, so a flaky link still finishes a 400 GB model while a dead one fails fast.
The whole file is hashed while it arrives; a digest that does not match the one given (or the
catalog's) deletes the partial, because resuming a wrong file can never make it right. Free room
is checked before the transfer when the server sends a size, and every 64 MiB while it arrives
when it does not; running out deletes the partial (retrying cannot help).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from appliance.errors import (
    ApplianceError,
    ModelFormatError,
    NotFound,
    StorageError,
    UsageError,
)
from appliance.store import blobs
from appliance.store.blobs import Progress
from appliance.store.bundle import import_bundle, is_bundle
from appliance.store.catalog import find_by_url
from appliance.store.gguf_meta import read_gguf_metadata
from appliance.store.names import check_model_name, default_model_name
from appliance.store.staging import ImportResult, Staging

log = logging.getLogger(__name__)

MAX_FAILURES_IN_A_ROW = 5
BACKOFF_S = 1.0
BACKOFF_CAP_S = 30.0
TIMEOUT = httpx.Timeout(30.0, read=120.0)
ROOM_CHECK_BYTES = 64 * 1024 * 1024
"""A download of unknown size checks for this much free room (plus the margin) each time."""


class DownloadError(ApplianceError):
    """A transfer that kept failing; the partial file is kept for the next try."""

    code = "download_failed"
    http_status = 502
    title = "Download failed"


def partial_paths(models_dir: Path, url: str) -> tuple[Path, Path]:
    key = hashlib.sha256(url.encode()).hexdigest()[:24]
    return models_dir / f".download-{key}.part", models_dir / f".download-{key}.json"


def download(
    url: str,
    dest: Path,
    *,
    progress: Progress | None = None,
    client: httpx.Client | None = None,
    max_failures: int = MAX_FAILURES_IN_A_ROW,
    backoff_s: float = BACKOFF_S,
    room: Any = None,
) -> tuple[str, int]:
    """Fetch `url` into `dest`, resuming what is there; return (sha256, size).

    `room(total)` is called once the size is known, to refuse a file the disk cannot hold.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"{url}: only http:// and https:// URLs can be imported")
    sidecar = dest.with_suffix(".json")
    own_client = client is None
    client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=True)
    failures = 0
    try:
        while True:
            before = dest.stat().st_size if dest.exists() else 0
            try:
                return _attempt(client, url, dest, sidecar, progress, room)
            except (httpx.TransportError, _ServerTrouble) as exc:
                after = dest.stat().st_size if dest.exists() else 0
                failures = 0 if after > before else failures + 1
                if failures >= max_failures:
                    raise DownloadError(
                        f"{url}: gave up after {failures} failed attempts in a row ({exc}); "
                        f"{after:,} bytes are kept and the next import of this URL resumes"
                    ) from None
                delay = min(BACKOFF_CAP_S, backoff_s * 2 ** max(failures - 1, 0))
                log.warning("download of %s interrupted at %s bytes (%s); retrying in %.1f s",
                            url, f"{after:,}", exc, delay)  # fmt: skip
                time.sleep(delay)
    finally:
        if own_client:
            client.close()


class _ServerTrouble(Exception):
    """A 5xx or 429: worth retrying."""


def _attempt(
    client: httpx.Client, url: str, dest: Path, sidecar: Path, progress: Progress | None, room: Any
) -> tuple[str, int]:
    have = dest.stat().st_size if dest.exists() else 0
    saved = _read_json(sidecar) if have else {}
    headers = {"Accept-Encoding": "identity"}  # byte offsets must be offsets in the file
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = saved.get("etag") or saved.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status == 416 and have:
            # Nothing left to send: either we already have it all, or the file shrank.
            total = _total_from_range(response.headers.get("content-range"))
            if total == have:
                return _hash(dest, progress), have
            _discard(dest, sidecar)
            raise _ServerTrouble("the file on the server changed; starting again")
        if status in (429,) or status >= 500:
            raise _ServerTrouble(f"server answered {status}")
        if status == 404:
            raise NotFound(f"{url}: the server has no such file (404)")
        if status >= 400:
            raise UsageError(f"{url}: the server refused the download ({status})")
        resuming = status == 206
        if resuming:
            start = _start_from_range(response.headers.get("content-range"))
            if start != have:
                _discard(dest, sidecar)
                raise _ServerTrouble(f"server resumed at byte {start}, not {have}")
        else:
            have = 0  # a 200 is the whole file: the server ignored Range or If-Range failed
        length = int(response.headers.get("content-length") or 0)
        total = have + length if length else 0
        if room is not None and total:
            room(total - have)
        # Without a size, room is checked as the bytes arrive: each step must fit in turn.
        next_check = 0 if room is not None and not total else None
        sidecar.write_text(json.dumps({
            "url": url, "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"), "total": total,
        }))  # fmt: skip
        digest = hashlib.sha256()
        if have:
            _hash_into(digest, dest)
        with dest.open("ab" if resuming else "wb") as out:
            done = have
            # Without a chunk size httpx yields bytes as they arrive, so a drop keeps them all.
            for chunk in response.iter_bytes():
                if next_check is not None and done + len(chunk) > next_check:
                    room(ROOM_CHECK_BYTES)
                    next_check = done + ROOM_CHECK_BYTES
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total or done)
            out.flush()
            os.fsync(out.fileno())
    if total and done != total:
        raise _ServerTrouble(f"connection ended at byte {done:,} of {total:,}")
    return digest.hexdigest(), done


def import_url(
    store: Staging,
    url: str,
    name: str | None = None,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    client: httpx.Client | None = None,
    backoff_s: float = BACKOFF_S,
    max_failures: int = MAX_FAILURES_IN_A_ROW,
) -> ImportResult:
    """Download `url` (resuming a partial one) and import it like a local file."""
    filename = unquote(Path(urlsplit(url).path).name)
    name = check_model_name(name) if name is not None else default_model_name(filename or url)
    known = find_by_url(url)
    expected = (sha256 or (known.file.sha256 if known else None) or "").lower() or None
    dest, sidecar = partial_paths(store.models_dir, url)
    try:
        digest, size = download(
            url, dest, progress=progress, client=client, backoff_s=backoff_s,
            max_failures=max_failures, room=lambda n: store.check_room(url, n),
        )  # fmt: skip
    except StorageError:
        _discard(dest, sidecar)  # a disk too small stays too small: keep nothing
        raise
    except OSError as exc:  # the disk filled up (or failed) under the transfer
        written = dest.stat().st_size if dest.exists() else 0
        _discard(dest, sidecar)
        raise store.storage_error(exc, url, written) from None
    try:
        if expected and digest != expected:
            raise ModelFormatError(
                f"{url}: sha256 {digest} does not match the expected {expected}; the download "
                "was discarded and nothing was imported"
            )
        if known and known.file.size_exact and size != known.file.size_bytes:
            raise ModelFormatError(
                f"{url}: {size:,} bytes, but the catalog lists {known.file.size_bytes:,} for "
                f"{known.file.file}; the download was discarded"
            )
        if is_bundle(dest):
            return import_bundle(store, dest, name, progress=progress)
        meta = read_gguf_metadata(dest)
        blobs.fsync_file(dest)
        return store.commit_and_register(
            dest, name, digest, size, meta, source=url,
            catalog_id=known.entry.id if known else None,
        )  # fmt: skip
    finally:
        # Whatever happened, this download is finished: a bad file must not be resumed.
        _discard(dest, sidecar)


def _discard(dest: Path, sidecar: Path) -> None:
    for path in (dest, sidecar):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _hash(path: Path, progress: Progress | None) -> str:
    size = path.stat().st_size
    return blobs.hash_file(path, size, progress)


def _hash_into(digest: Any, path: Path) -> None:
    with path.open("rb") as reader:
        while chunk := reader.read(blobs.CHUNK_BYTES):
            digest.update(chunk)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _start_from_range(header: str | None) -> int:
    # "bytes 100-199/200"
    try:
        return int((header or "").split(" ", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return -1


def _total_from_range(header: str | None) -> int:
    # "bytes */200" on a 416
    try:
        return int((header or "").rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return -1
