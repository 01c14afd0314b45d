"""Removable media: which mounted filesystems are USB sticks, and which model files they hold.

Imports `appliance.records`, `appliance.errors` and the store's header check; reads only
`/proc/self/mounts` and `/sys/block` (both paths parameters, so tests give their own trees).
The device manager announces new mounts from udev; the TUI and `appliance models media`
list what can be imported from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from appliance.errors import ApplianceError, NotFound
from appliance.records import ImportableFile, RemovableMount
from appliance.store.gguf_meta import check_gguf_header

MAX_DEPTH = 4
MAX_ENTRIES = 20_000
"""Stop walking a medium after this many entries: a backup disk is not a model stick."""
MAX_MANIFEST_BYTES = 1024 * 1024
_TAR_BLOCK = 512


def removable_mounts(
    proc_mounts: Path = Path("/proc/self/mounts"), sys_block: Path = Path("/sys/block")
) -> list[RemovableMount]:
    removable = _removable_block_names(sys_block)
    found = []
    try:
        lines = proc_mounts.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or not fields[0].startswith("/dev/"):
            continue
        if Path(fields[0]).name in removable:
            found.append(RemovableMount(device=fields[0], mount_point=_unescape(fields[1]),
                                        filesystem=fields[2]))  # fmt: skip
    return found


def scan_mounts(
    proc_mounts: Path = Path("/proc/self/mounts"), sys_block: Path = Path("/sys/block")
) -> list[RemovableMount]:
    mounts = removable_mounts(proc_mounts, sys_block)
    for mount in mounts:
        mount.files = importable_files(Path(mount.mount_point))
    return mounts


def importable_files(mount_point: Path, max_depth: int = MAX_DEPTH) -> list[ImportableFile]:
    """GGUF files, ONNX model folders and bundles under `mount_point` (no symlinks followed)."""
    root = Path(mount_point)
    if not root.is_dir():
        raise NotFound(f"{root} is not a mounted folder")
    found: list[ImportableFile] = []
    seen = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < max_depth else []
        seen += len(dirs) + len(files)
        if seen > MAX_ENTRIES:
            break
        if "genai_config.json" in files or any(f.endswith(".onnx") for f in files):
            size = sum((here / f).stat().st_size for f in files if (here / f).is_file())
            found.append(ImportableFile(path=str(here), kind="onnx", size_bytes=size))
            dirs[:] = []
            continue
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            item = _classify(path)
            if item is not None:
                found.append(item)
    return found


def _classify(path: Path) -> ImportableFile | None:
    size = path.stat().st_size
    if path.suffix.lower() == ".gguf":
        try:
            check_gguf_header(path)
        except ApplianceError as error:
            return ImportableFile(path=str(path), kind="gguf", size_bytes=size,
                                  detail=f"not importable: {error.message}")  # fmt: skip
        part = "-00001-of-" in path.name
        split = "-of-" in path.name and not part
        detail = "first part of a split model" if part else ("a later split part" if split else "")
        return ImportableFile(path=str(path), kind="gguf", size_bytes=size, detail=detail)
    if path.suffix.lower() == ".tar":
        manifest = bundle_manifest(path)
        if manifest is None:
            return None
        name = manifest.get("name")
        shown = name[:64] if isinstance(name, str) else "?"
        return ImportableFile(path=str(path), kind="bundle", size_bytes=size,
                              detail=f"bundle of {shown}")  # fmt: skip
    return None


def bundle_manifest(path: Path) -> dict[str, object] | None:
    """The manifest leading a bundle, read from its first 512-byte tar header; None otherwise.

    Parsed by hand, not with `tarfile`: the stick is anyone's, and tarfile reads whatever a
    pax or GNU long-name header claims into memory (a header can claim gigabytes). Bundles
    start with a plain ustar header for `manifest.json` (bundle.py writes it so); anything
    else is not a bundle. At most 512 + MAX_MANIFEST_BYTES bytes are read.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(_TAR_BLOCK)
            if len(header) != _TAR_BLOCK or header[257:262] != b"ustar":
                return None
            name = header[0:100].split(b"\0", 1)[0]
            prefix = header[345:500].split(b"\0", 1)[0]
            if name != b"manifest.json" or prefix or header[156:157] not in (b"0", b"\0"):
                return None
            checksum, size = _octal(header[148:156]), _octal(header[124:136])
            blank = header[:148] + b" " * 8 + header[156:]
            if checksum != sum(blank) or size is None or size > MAX_MANIFEST_BYTES:
                return None
            data = handle.read(size)
        manifest = json.loads(data) if len(data) == size else None
    except (OSError, ValueError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _octal(field: bytes) -> int | None:
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else None
    except ValueError:
        return None


def _removable_block_names(sys_block: Path) -> set[str]:
    names: set[str] = set()
    try:
        disks = list(sys_block.iterdir())
    except OSError:
        return names
    for disk in disks:
        try:
            if (disk / "removable").read_text().strip() != "1":
                continue
        except OSError:
            continue
        names.add(disk.name)
        # Partitions are subfolders named after the disk (sdb/sdb1) holding a `partition` file.
        names.update(p.name for p in disk.iterdir() if (p / "partition").exists())
    return names


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...).
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
