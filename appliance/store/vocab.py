"""Vocabulary fingerprints of GGUF models: do two models give the same token ids the same text?

A draft model (speculative decoding, `engine.draft_model`) must share the served model's
vocabulary: its guesses are token ids the served model verifies. The fingerprint is a SHA-256
of the token texts (`tokenizer.ggml.tokens`, as stored: length and bytes of each), leaving out
trailing unused padding entries: converters pad the table to the embedding's row count (Qwen2.5
1.5B has 151,936 rows, 7B and larger 152,064; the rows past the real tokens are `[PAD…]`), so
models of one family differ only there.

The token table is read with a small scanner of the GGUF key/value section (the gguf library
builds a Python object per token, seconds for a 150k vocabulary), and each fingerprint is kept
by the file's SHA-256 in `<state_dir>/cache/vocab-fingerprints.json`, so a file is read once.
Imports `appliance.errors`, `appliance.records`, `appliance.atomic_file` and `gguf_meta`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import struct
import threading
from pathlib import Path

from appliance.atomic_file import write_atomically
from appliance.errors import ApplianceError
from appliance.records import ModelFormat, ModelInfo
from appliance.store.gguf_meta import HEADER, check_gguf_header

TOKENS_KEY = "tokenizer.ggml.tokens"
TYPES_KEY = "tokenizer.ggml.token_type"
UNUSED = 5
"""gguf TokenType.UNUSED: the padding entries converters add."""
_STRING, _ARRAY = 8, 9
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class VocabFingerprints:
    """Fingerprints of the store's GGUF models, cached by file hash (thread-safe)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "cache" / "vocab-fingerprints.json"
        self._lock = threading.Lock()
        self._known: dict[str, str] | None = None

    def of(self, info: ModelInfo) -> str | None:
        """The model's fingerprint; None for a model that is not GGUF or has no token table
        (or whose file cannot be read: it then cannot be a draft model, nor have one)."""
        if info.format != ModelFormat.GGUF:
            return None
        with self._lock:
            known = self._load()
            if info.sha256 in known:
                return known[info.sha256] or None
        try:
            found = fingerprint(Path(info.path)) or ""
        except (OSError, ValueError, ApplianceError):
            return None
        with self._lock:
            known = self._load()
            known[info.sha256] = found
            # A read-only state folder: the fingerprint is computed again next time.
            with contextlib.suppress(ApplianceError):
                write_atomically(self.path, json.dumps(known, indent=0), what="write")
        return found or None

    def _load(self) -> dict[str, str]:
        if self._known is None:
            try:
                loaded = json.loads(self.path.read_text())
                self._known = {str(k): str(v) for k, v in loaded.items()}
            except (OSError, ValueError, AttributeError):
                self._known = {}
        return self._known


def fingerprint(path: Path) -> str | None:
    """SHA-256 (hex) of the GGUF file's token texts without trailing padding; None when it has
    no token table. Raises ModelFormatError for a file that is not a sound GGUF."""
    size = check_gguf_header(path)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        _magic, _version, _tensors, kv_count = HEADER.unpack_from(data, 0)
        offset = HEADER.size
        tokens: list[tuple[int, int]] | None = None
        types: list[int] | None = None
        for _ in range(kv_count):
            key, offset = _string(data, offset, size)
            (kind,) = _U32.unpack_from(data, offset)
            offset += 4
            if key == TOKENS_KEY and kind == _ARRAY:
                tokens, offset = _string_spans(data, offset, size)
            elif key == TYPES_KEY and kind == _ARRAY:
                types, offset = _int_array(data, offset)
            else:
                offset = _skip(data, offset, kind, size)
            if tokens is not None and types is not None:
                break
        if not tokens:
            return None
        count = len(tokens)
        if types is not None and len(types) == count:
            while count > 1 and types[count - 1] == UNUSED:
                count -= 1
        digest = hashlib.sha256()
        digest.update(data[tokens[0][0] : tokens[count - 1][1]])
        return digest.hexdigest()


def _string(data: mmap.mmap, offset: int, size: int) -> tuple[str, int]:
    (length,) = _U64.unpack_from(data, offset)
    end = offset + 8 + length
    if end > size:
        raise ValueError("truncated GGUF metadata")
    return bytes(data[offset + 8 : end]).decode(errors="replace"), end


def _string_spans(data: mmap.mmap, offset: int, size: int) -> tuple[list[tuple[int, int]], int]:
    """(start, end) byte spans of each element of a string array, and the offset past it."""
    (kind,) = _U32.unpack_from(data, offset)
    (count,) = _U64.unpack_from(data, offset + 4)
    offset += 12
    if kind != _STRING:
        return [], _skip_elements(data, offset, kind, count, size)
    spans = []
    unpack = _U64.unpack_from
    for _ in range(count):
        (length,) = unpack(data, offset)
        end = offset + 8 + length
        if end > size:
            raise ValueError("truncated GGUF token table")
        spans.append((offset, end))
        offset = end
    return spans, offset


def _int_array(data: mmap.mmap, offset: int) -> tuple[list[int], int]:
    (kind,) = _U32.unpack_from(data, offset)
    (count,) = _U64.unpack_from(data, offset + 4)
    offset += 12
    width = _SCALAR_SIZES.get(kind)
    if width not in (4,):
        raise ValueError("unexpected token type array")
    values = list(struct.unpack_from(f"<{count}i", data, offset))
    return values, offset + 4 * count


def _skip(data: mmap.mmap, offset: int, kind: int, size: int) -> int:
    if kind == _ARRAY:
        (inner,) = _U32.unpack_from(data, offset)
        (count,) = _U64.unpack_from(data, offset + 4)
        return _skip_elements(data, offset + 12, inner, count, size)
    return _skip_elements(data, offset, kind, 1, size)


def _skip_elements(data: mmap.mmap, offset: int, kind: int, count: int, size: int) -> int:
    if kind == _STRING:
        unpack = _U64.unpack_from
        for _ in range(count):
            offset += 8 + unpack(data, offset)[0]
            if offset > size:
                raise ValueError("truncated GGUF metadata")
        return offset
    if kind == _ARRAY:
        for _ in range(count):
            offset = _skip(data, offset, _ARRAY, size)
        return offset
    width = _SCALAR_SIZES.get(kind)
    if width is None:
        raise ValueError(f"unknown GGUF value type {kind}")
    return offset + width * count


__all__ = ["VocabFingerprints", "fingerprint"]
