"""Removable media: which mounted filesystems are USB sticks, and which model files they hold.

Imports `appliance.records`, `appliance.errors` and the store's header check; reads only
`/proc/self/mounts` and `/sys/block` (both paths parameters, so tests give their own trees).
The device manager announces new mounts from udev; the TUI and `appliance models media`
list what can be imported from them.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from appliance.errors import ApplianceError, NotFound
from appliance.records import ImportableFile, RemovableMount
from appliance.store.gguf_meta import check_gguf_header

MAX_DEPTH = 4
MAX_ENTRIES = 20_000
"""Stop walking a medium after this many entries: a backup disk is not a model stick."""


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
        try:
            with tarfile.open(path, "r|") as tar:
                first = tar.next()
                if first is None or first.name != "manifest.json" or first.size > 1024 * 1024:
                    return None
                handle = tar.extractfile(first)
                manifest = json.loads(handle.read()) if handle else {}
        except (tarfile.TarError, OSError, ValueError):
            return None
        return ImportableFile(path=str(path), kind="bundle", size_bytes=size,
                              detail=f"bundle of {manifest.get('name', '?')}")  # fmt: skip
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
