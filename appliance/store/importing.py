"""Import dispatch: what a source is, and which importer takes it.

A GGUF file goes to the registry (`ModelStore.import_file`), an ONNX model folder to
`onnx_meta.import_onnx_dir`, a bundle (.tar) to `bundle.import_bundle`, an http(s) URL to
`download.import_url` (which may find a bundle behind it). A file on a USB stick is a path like
any other (`media.py` only lists them). Sits above the registry and the importers; nothing in
the store imports it, so the registry never depends on its importers.
"""

from __future__ import annotations

from pathlib import Path

from appliance.store.blobs import Progress
from appliance.store.bundle import import_bundle, is_bundle
from appliance.store.download import import_url
from appliance.store.models import ModelStore
from appliance.store.onnx_meta import import_onnx_dir
from appliance.store.staging import ImportResult


def is_url(source: str | Path) -> bool:
    return str(source).startswith(("http://", "https://"))


def import_source(
    store: ModelStore,
    source: str | Path,
    name: str | None = None,
    *,
    progress: Progress | None = None,
    sha256: str | None = None,
) -> ImportResult:
    """Import a path or an http(s) URL (the admin API's `import`)."""
    if is_url(source):
        return import_url(store, str(source), name, sha256=sha256, progress=progress)
    return import_path(store, Path(source), name, source=str(source), progress=progress,
                       sha256=sha256)  # fmt: skip


def import_path(
    store: ModelStore,
    src: Path,
    name: str | None = None,
    *,
    source: str = "",
    progress: Progress | None = None,
    sha256: str | None = None,
) -> ImportResult:
    """Import whatever `src` is: a GGUF file, an ONNX model folder or a bundle (.tar)."""
    src = Path(src)
    if src.is_dir():
        return import_onnx_dir(store, src, name, source=source, progress=progress)
    if src.is_file() and is_bundle(src):
        return import_bundle(store, src, name, progress=progress)
    return store.import_file(src, name, source=source, progress=progress, sha256=sha256)
