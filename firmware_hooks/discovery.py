"""Which hooks an event runs: the event folders under the hooks directory, and what is skipped.

Imports the standard library only. Part of the hook runner (`runner.py` runs what this finds).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

logger = logging.getLogger("appliance.hooks")

# Files package managers and editors leave beside a hook; running them would run a stale or
# half-merged copy (run-parts and systemd's conf.d readers skip the same families).
_BACKUP_SUFFIXES = ("~", ".rpmnew", ".rpmsave", ".rpmorig")
_BACKUP_INFIXES = (".dpkg-",)


class HookEvent(StrEnum):
    """Lifecycle events; each has its own folder `<event>.d` under the hooks directory."""

    BOOT = "boot"
    DEVICE_ADDED = "device-added"
    DEVICE_REMOVED = "device-removed"
    MODEL_LOADING = "model-loading"
    MODEL_LOADED = "model-loaded"
    MODEL_UNLOADED = "model-unloaded"
    UPDATE = "update"


def discover_hooks(hooks_dir: Path, event: HookEvent | str) -> list[Path]:
    """The hooks for `event`, in the order they run (sorted by file name, C collation).

    A missing hooks directory or event folder means no hooks. Hidden files, backups left by
    editors and package managers, and subfolders are skipped quietly; files that look like hooks
    but cannot be run (not executable, world-writable, dangling link) are skipped with a warning,
    since they are almost always an administrator's mistake.
    """
    folder = Path(hooks_dir) / f"{HookEvent(event)}.d"
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        logger.warning("hooks: %s is not a directory; no %s hooks run", folder, event)
        return []
    except PermissionError:
        logger.warning("hooks: %s is not readable by this user; no %s hooks run", folder, event)
        return []
    hooks = []
    for entry in entries:
        reason = _skip_reason(entry)
        if reason is None:
            hooks.append(Path(entry.path))
        elif reason:
            logger.warning("hooks: skipping %s: %s", entry.path, reason)
        else:
            logger.debug("hooks: ignoring %s", entry.path)
    return hooks


@dataclass(frozen=True, slots=True)
class HookEntry:
    """One file in an event folder, and whether the runner would run it."""

    event: str
    name: str
    path: Path
    runs: bool
    problem: str = ""
    """Why it is refused (not executable, world-writable, dangling link); empty when it runs."""
    target: Path | None = None
    """Where a symlinked hook points (the shipped hooks are links into the venv)."""


def list_hooks(hooks_dir: Path) -> list[HookEntry]:
    """Every hook-like file of every event, with the runner's verdict (for `appliance hooks
    list` and the doctor); quietly ignored files (backups, hidden, folders) are left out."""
    found = []
    for event in HookEvent:
        folder = Path(hooks_dir) / f"{event}.d"
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            reason = _skip_reason(entry)
            if reason == "":
                continue
            path = Path(entry.path)
            target = Path(os.readlink(path)) if path.is_symlink() else None
            found.append(HookEntry(str(event), entry.name, path, reason is None, reason or "",
                                   target))  # fmt: skip
    return found


def _skip_reason(entry: os.DirEntry[str]) -> str | None:
    """None to run the entry, "" to ignore it quietly, else why it is refused."""
    name = entry.name
    if name.startswith(".") or name.endswith(_BACKUP_SUFFIXES):
        return ""
    if any(infix in name for infix in _BACKUP_INFIXES):
        return ""
    try:
        info = entry.stat()  # follows symlinks: a linked hook runs its target
    except FileNotFoundError:
        return "dangling symlink"
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return ""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(entry.path, os.X_OK):
        return "not executable (chmod +x to enable it)"
    # Anyone could replace a world-writable hook's contents and have the daemon run them.
    if info.st_mode & stat.S_IWOTH:
        return "world-writable; refusing to run it"
    return None
