"""Model names: which names the registry accepts, and the default made from a file or URL.

A leaf of the store: imports `appliance.errors` only, so every importer can name what it imports.
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.errors import UsageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"invalid model name {name!r}: use letters, digits and . - _ : (at most 128 "
            "characters, starting with a letter or digit)"
        )
    return name


def default_model_name(src: Path | str) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` -> `smollm2-135m-instruct.q4_1`."""
    stem = Path(str(src)).name.lower().removesuffix(".gguf").removesuffix(".tar")
    name = re.sub(r"[^a-z0-9._:-]+", "-", stem).lstrip("._:-").rstrip("._:-")[:128]
    if not name:
        raise UsageError(f"cannot make a model name from {str(src)!r}; give one with --name")
    return name
