"""Blob files and folders: hashing while copying, fsync, atomic commit, and directory digests.

Imports only `appliance.errors`. `models.py` decides what to store; this module only moves bytes
so that a blob path exists only once its whole content is on disk.

A GGUF blob is one file `blobs/sha256-<hex>.gguf`. An ONNX blob is a directory
`blobs/sha256-<hex>.onnx/` whose digest is the sha256 of its listing: one line per file,
`<sha256>  <relative path>\\n` in path order (the format of `sha256sum`), so verifying a folder
is re-hashing its files and the listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from appliance.errors import StorageError, UsageError

CHUNK_BYTES = 8 * 1024 * 1024
GIB = 1024**3

Progress = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while a file is copied or hashed."""


def copy_hashing(
    src: Path, dest: Path, total: int, progress: Progress | None, done: int = 0
) -> str:
    """Copy `src` to the new file `dest`, fsynced; return its sha256. `done` offsets progress."""
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
                progress(done + copied, total)
        writer.flush()
        os.fsync(writer.fileno())  # the bytes are on disk before the rename makes them count
    if copied != src.stat().st_size:
        raise UsageError(f"{src} changed size while it was imported")
    return digest.hexdigest()


def hash_file(path: Path, total: int, progress: Progress | None, done: int = 0) -> str:
    digest = hashlib.sha256()
    hashed = 0
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            hashed += len(chunk)
            if progress is not None:
                progress(done + hashed, total)
    return digest.hexdigest()


def listing_digest(files: dict[str, str]) -> str:
    """The digest of a folder from {relative path: sha256} (see the module docstring)."""
    text = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def folder_files(root: Path) -> list[Path]:
    """Regular files under `root`, sorted; refuses symlinks and special files."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise UsageError(f"{path} is a symbolic link; copy the real file into the folder")
        if path.is_dir():
            continue
        if not path.is_file():
            raise UsageError(f"{path} is not a regular file")
        found.append(path)
    return found


def hash_folder(root: Path, progress: Progress | None = None) -> tuple[str, dict[str, str], int]:
    """(listing digest, {relative path: sha256}, total bytes) of a folder's files."""
    files = folder_files(root)
    total = sum(path.stat().st_size for path in files)
    digests: dict[str, str] = {}
    done = 0
    for path in files:
        size = path.stat().st_size
        digests[path.relative_to(root).as_posix()] = hash_file(path, total, progress, done)
        done += size
    return listing_digest(digests), digests, total


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (POSIX: the directory entry needs its own fsync)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal(path: Path) -> None:
    """Make a finished blob read-only (files 0444, folders 0555): a stray write fails loudly."""
    if path.is_dir():
        for child in path.rglob("*"):
            child.chmod(0o555 if child.is_dir() else 0o444)
        path.chmod(0o555)
    else:
        path.chmod(0o444)


def remove_tree(path: Path) -> None:
    """Delete a file or a (sealed) folder; a missing one is fine."""
    if path.is_dir() and not path.is_symlink():
        for child in [path, *path.rglob("*")]:
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def disk_full(what: str, where: Path, needed: int, free: int) -> StorageError:
    return StorageError(
        f"disk full while importing {what} into {where} (needed {needed / GIB:.2f} GiB, "
        f"free {free / GIB:.2f} GiB)"
    )
