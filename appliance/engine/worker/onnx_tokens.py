"""Token ids to bytes for the ONNX engine, from a Hugging Face tokenizer.json.

The batcher decodes UTF-8 itself (a character may span tokens), so it needs each token's raw
bytes, which `tokenizers` only gives as text. May import the standard library only (and reads
the `tokenizers.Tokenizer` it is handed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def token_bytes(path: Path, tokenizer: Any) -> list[bytes]:
    """Each token's bytes, so that a character split across tokens reaches the batcher's
    UTF-8 decoder whole. Byte-level BPE maps bytes to printable characters (GPT-2's table);
    SentencePiece-style vocabularies write bytes as `<0xAB>` and spaces as `▁`."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    decoder = json.dumps(data.get("decoder") or {})
    byte_level = "ByteLevel" in decoder
    table = {char: byte for byte, char in _bytes_to_unicode().items()}
    special = {int(t["id"]): str(t["content"]).encode() for t in data.get("added_tokens") or []}
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    pieces: list[bytes] = []
    for token in range(size):
        if token in special:
            pieces.append(special[token])
            continue
        text = tokenizer.id_to_token(token)
        if text is None:
            pieces.append(b"")
        elif byte_level:
            pieces.append(bytes(table[c] for c in text if c in table))
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            pieces.append(bytes([int(text[3:5], 16)]))
        else:
            pieces.append(text.replace("\u2581", " ").encode())
    return pieces


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    chars = list(keep)
    extra = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))
