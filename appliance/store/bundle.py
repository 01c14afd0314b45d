"""Bundles: one tar that carries a model between offline boxes, and importing one safely.

Imports the standard library, `appliance.errors`, `appliance.records` and the store's modules.

Layout (uncompressed tar: GGUF weights do not compress, and a plain tar streams from a USB
stick without a temp copy): `manifest.json` first, then `model/<file>` (a GGUF) or
`model/<folder files>` (ONNX). The manifest names the model, its format, every file with its
sha256 and size, the catalog id and the original source.

Import reads the tar as a stream and trusts nothing: only regular files and folders, only
relative paths under `model/` with no `..`, only files the manifest lists, each written to a temp
folder inside `models/` while hashed. Every checksum is compared before anything is registered;
any fault deletes the temp folder. `tarfile.extractall` is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any

from appliance.errors import ModelFormatError
from appliance.records import ModelFormat
from appliance.store import blobs
from appliance.store.blobs import Progress
from appliance.store.gguf_meta import read_gguf_metadata
from appliance.store.names import check_model_name
from appliance.store.onnx_meta import read_onnx_metadata
from appliance.store.staging import ImportResult, Staging

MANIFEST = "manifest.json"
BUNDLE_VERSION = 1
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_FILES = 10_000


def is_bundle(path: Path) -> bool:
    """A tar (a bundle, or something to refuse as one); a `.gguf` never is."""
    if path.suffix == ".gguf":
        return False
    with contextlib.suppress(OSError):
        return tarfile.is_tarfile(path)
    return False


def export_bundle(store: Staging, name: str, dest: Path, progress: Progress | None = None) -> Path:
    """Write `name` as a bundle to `dest` (via a temp file beside it, renamed when complete)."""
    model = store.get(name)
    src = Path(model.path)
    if model.format == ModelFormat.ONNX:
        files = {p.relative_to(src).as_posix(): p for p in blobs.folder_files(src)}
    else:
        files = {Path(model.source).name if model.source.endswith(".gguf") else f"{name}.gguf": src}
    total = sum(p.stat().st_size for p in files.values())
    listed = []
    done = 0
    for rel, path in files.items():  # hash now: the manifest must lead the tar
        size = path.stat().st_size
        listed.append({"path": f"model/{rel}", "size": size,
                       "sha256": blobs.hash_file(path, total, progress, done)})  # fmt: skip
        done += size
    manifest = {
        "bundle_version": BUNDLE_VERSION,
        "name": model.name,
        "format": model.format.value,
        "sha256": model.sha256,
        "catalog_id": model.catalog_id,
        "source": model.source,
        "architecture": model.architecture,
        "quantization": model.quantization,
        "exported_at": time.time(),
        "files": listed,
    }
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with (
            tmp.open("wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            data = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, _bytes_io(data))
            for item, path in zip(listed, files.values(), strict=True):
                info = tarfile.TarInfo(item["path"])
                info.size, info.mtime, info.mode = item["size"], int(time.time()), 0o644
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise store.storage_error(exc, f"bundle {dest}", total) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def import_bundle(
    store: Staging, src: Path, name: str | None = None, *, progress: Progress | None = None
) -> ImportResult:
    """Verify and import a bundle; nothing is registered unless every checksum matches."""
    src = Path(src)
    partial = store.new_partial()
    try:
        with tarfile.open(src, mode="r|") as tar:  # a stream: one pass, no seeking
            manifest, first = _read_manifest(src, tar)
            expected = {f["path"]: f for f in manifest["files"]}
            total = sum(f["size"] for f in expected.values())
            store.check_room(str(src), total)
            partial.mkdir()
            seen = _extract_checked(src, tar, first, partial, expected, total, progress)
        missing = sorted(set(expected) - seen)
        if missing:
            raise ModelFormatError(f"{src}: the bundle lacks {', '.join(missing)}")
        fmt = ModelFormat(manifest["format"])
        name = check_model_name(name or manifest["name"])
        root = partial / "model"
        if fmt == ModelFormat.ONNX:
            meta = read_onnx_metadata(root)
            digest = blobs.listing_digest(
                {p.removeprefix("model/"): f["sha256"] for p, f in expected.items()}
            )
            payload = root
        else:
            if len(expected) != 1:
                raise ModelFormatError(f"{src}: a GGUF bundle holds exactly one model file")
            payload = root / PurePosixPath(next(iter(expected))).relative_to("model")
            meta = read_gguf_metadata(payload)
            digest = next(iter(expected.values()))["sha256"]
        if manifest.get("sha256") and manifest["sha256"] != digest:
            raise ModelFormatError(f"{src}: the manifest's model digest does not match its files")
        return store.commit_and_register(
            payload, name, digest, total, meta, source=str(manifest.get("source") or src),
            fmt=fmt, catalog_id=manifest.get("catalog_id"),
        )  # fmt: skip
    except tarfile.TarError as exc:
        raise ModelFormatError(f"{src}: not a readable bundle ({exc})") from None
    except OSError as exc:
        raise store.storage_error(exc, str(src), 0) from None
    finally:
        blobs.remove_tree(partial)


def _read_manifest(src: Path, tar: tarfile.TarFile) -> tuple[dict[str, Any], tarfile.TarInfo]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise ModelFormatError(f"{src}: not a model bundle (its first entry is not {MANIFEST})")
    if first.size > MAX_MANIFEST_BYTES:
        raise ModelFormatError(f"{src}: a {first.size:,}-byte manifest is not a real one")
    handle = tar.extractfile(first)
    assert handle is not None
    try:
        manifest = json.loads(handle.read())
        files = manifest["files"]
        ModelFormat(manifest["format"])
        if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
            raise ValueError("files must be a non-empty list")
        for item in files:
            _safe_member_path(src, item["path"])
            if not (isinstance(item["size"], int) and item["size"] >= 0):
                raise ValueError(f"bad size for {item['path']}")
            if not (isinstance(item["sha256"], str) and len(item["sha256"]) == 64):
                raise ValueError(f"bad sha256 for {item['path']}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{src}: damaged bundle manifest ({exc})") from None
    return manifest, first


def _extract_checked(
    src: Path, tar: tarfile.TarFile, first: tarfile.TarInfo, dest: Path,
    expected: dict[str, dict[str, Any]],
    total: int, progress: Progress | None,
) -> set[str]:  # fmt: skip
    seen: set[str] = set()
    done = 0
    for member in tar:
        if member is first:  # iterating a stream replays the members already read
            continue
        rel = _safe_member_path(src, member.name)
        if member.isdir():
            continue
        if not member.isfile():  # symlinks, hard links, devices, FIFOs
            raise ModelFormatError(
                f"{src}: refused: {member.name} is a {_kind(member)}, not a regular file"
            )
        item = expected.get(member.name)
        if item is None or member.name in seen:
            raise ModelFormatError(f"{src}: {member.name} is not listed in the manifest")
        if member.size != item["size"]:
            raise ModelFormatError(
                f"{src}: {member.name} is {member.size:,} bytes, the manifest says {item['size']:,}"
            )
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tar.extractfile(member)
        assert handle is not None
        digest = _copy_hashing(
            handle, target, lambda n, d=done: progress and progress(d + n, total)
        )
        if digest != item["sha256"]:
            raise ModelFormatError(
                f"{src}: checksum mismatch for {member.name} (sha256 {digest[:16]}…, manifest "
                f"{item['sha256'][:16]}…); the bundle is damaged, nothing was imported"
            )
        done += member.size
        seen.add(member.name)
    return seen


def _safe_member_path(src: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not name or "\\" in name:
        raise ModelFormatError(f"{src}: refused: unsafe path {name!r} in the bundle")
    if path.parts[0] != "model" and name != MANIFEST:
        raise ModelFormatError(f"{src}: refused: {name!r} is outside model/")
    return path


def _copy_hashing(handle: IO[bytes], target: Path, progress: Any) -> str:
    digest = hashlib.sha256()
    done = 0
    with target.open("xb") as out:
        while chunk := handle.read(blobs.CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            progress(done)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    return "special entry"


def _bytes_io(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)
