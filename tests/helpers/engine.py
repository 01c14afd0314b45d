"""Shared inputs for engine tests: a ChatML prompt for SmolLM2 and a ModelInfo for a GGUF path."""

from __future__ import annotations

from pathlib import Path

from appliance.records import ModelFormat, ModelInfo

PROMPT = "<|im_start|>user\nTell me a long story about the sea.<|im_end|>\n<|im_start|>assistant\n"


def model_info(path: Path, name: str = "smollm2") -> ModelInfo:
    """A registry record for `path` without importing it (the engine needs only these fields)."""
    return ModelInfo(
        name=name, format=ModelFormat.GGUF, path=str(path), sha256="0" * 64,
        size_bytes=path.stat().st_size, context_length=8192,
    )  # fmt: skip
