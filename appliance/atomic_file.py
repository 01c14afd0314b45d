"""Replace a small state file atomically: a crash leaves the old file or the new one, never a
half-written one. Imports only `appliance.errors`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from appliance.errors import StorageError


def write_atomically(path: Path, text: str, *, what: str) -> None:
    """Write `text` to `path` through a synced temporary file in the same folder; a failure is
    a StorageError saying `cannot {what} {path}: reason`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
        try:
            with os.fdopen(handle, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise StorageError(f"cannot {what} {path}: {exc.strerror}") from None
