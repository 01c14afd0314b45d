"""ModelStore: import, list, get, remove, verify, and what failures leave behind."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import (
    Conflict,
    ModelFormatError,
    ModelNotFound,
    NotFound,
    StorageError,
    UsageError,
)
from appliance.records import ModelFormat
from appliance.store import ImportResult, ModelStore, blobs, models
from appliance.store.importing import import_path
from helpers.tiny_gguf import write_tiny_llama


@pytest.fixture(scope="module")
def smollm2_store(
    tmp_path_factory: pytest.TempPathFactory, embedded_model: Path
) -> Iterator[tuple[ModelStore, ImportResult]]:
    """One store with the real SmolLM2 file imported: copying 100 MB once is enough."""
    store = ModelStore(tmp_path_factory.mktemp("smollm2-state"))
    result = store.import_file(embedded_model)
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
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_tiny_llama(tmp_path / "src" / "Tiny-R1-Llama.Q8_0.gguf")


@pytest.fixture
def other_tiny_gguf(tmp_path: Path) -> Path:
    """Same shape and size as `tiny_gguf`, different weights (a different sha256)."""
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_tiny_llama(tmp_path / "src" / "Other-Tiny.Q8_0.gguf", seed=1)


def stored_files(store: ModelStore) -> list[str]:
    """Every file under the models dir, relative to it."""
    return sorted(
        str(p.relative_to(store.models_dir)) for p in store.models_dir.rglob("*") if p.is_file()
    )


def blob_name(path: Path) -> str:
    return f"blobs/sha256-{hashlib.sha256(path.read_bytes()).hexdigest()}.gguf"


# -- the real SmolLM2 file (`embedded_model` from tests/conftest.py, imported once) ---------


def test_import_registers_metadata_read_from_the_real_smollm2_file(smollm2_store, embedded_model):
    store, result = smollm2_store
    model = result.model
    assert result.created
    assert model.name == "smollm2-135m-instruct.q4_1"
    assert model.format == ModelFormat.GGUF
    assert model.architecture == "llama"
    assert model.quantization == "Q4_1"
    assert model.context_length == 8192
    assert model.chat_template and "<|im_start|>" in model.chat_template
    assert (model.bos_token, model.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert 130_000_000 < (model.parameter_count or 0) < 140_000_000
    assert model.size_bytes == embedded_model.stat().st_size
    assert model.source == str(embedded_model)
    assert Path(model.path).is_file()
    assert stored_files(store) == [f"blobs/sha256-{model.sha256}.gguf"]


def test_real_file_hash_matches_the_source_file(smollm2_store, embedded_model):
    _store, result = smollm2_store
    assert result.model.sha256 == hashlib.sha256(embedded_model.read_bytes()).hexdigest()


def test_reimporting_the_real_file_under_its_name_changes_nothing(smollm2_store, embedded_model):
    store, first = smollm2_store
    again = store.import_file(embedded_model)
    assert not again.created
    assert again.model == first.model
    assert [m.name for m in store.list()] == [first.model.name]


def test_get_returns_what_import_registered(smollm2_store):
    store, result = smollm2_store
    assert store.get(result.model.name) == result.model


# -- importing ----------------------------------------------------------------------------


def test_same_file_under_two_names_is_stored_once(store, tiny_gguf):
    first = store.import_file(tiny_gguf, "first")
    second = store.import_file(tiny_gguf, "second")
    assert first.created and second.created
    assert first.model.path == second.model.path
    assert stored_files(store) == [blob_name(tiny_gguf)]
    assert [m.name for m in store.list()] == ["first", "second"]


def test_reimporting_same_name_and_file_is_idempotent(store, tiny_gguf):
    first = store.import_file(tiny_gguf)
    again = store.import_file(tiny_gguf)
    assert first.created and not again.created
    assert again.model == first.model  # imported_at unchanged too
    assert first.model.name == "tiny-r1-llama.q8_0"


def test_same_name_with_a_different_file_is_a_conflict_that_changes_nothing(
    store, tiny_gguf, other_tiny_gguf
):
    original = store.import_file(tiny_gguf, "tiny").model
    assert tiny_gguf.stat().st_size == other_tiny_gguf.stat().st_size  # must be hashed to tell
    with pytest.raises(Conflict, match=r"remove it first with `appliance models rm tiny`"):
        store.import_file(other_tiny_gguf, "tiny")
    assert store.list() == [original]
    assert stored_files(store) == [blob_name(tiny_gguf)]


def test_progress_reports_bytes_copied_of_total(store, tiny_gguf, monkeypatch):
    monkeypatch.setattr(blobs, "CHUNK_BYTES", 16 * 1024)
    calls: list[tuple[int, int]] = []
    store.import_file(tiny_gguf, progress=lambda done, total: calls.append((done, total)))
    size = tiny_gguf.stat().st_size
    assert len(calls) == -(-size // (16 * 1024))
    assert calls[-1] == (size, size)
    assert all(total == size for _done, total in calls)


def test_failure_mid_copy_leaves_no_temp_file_and_no_row(store, tiny_gguf, monkeypatch):
    monkeypatch.setattr(blobs, "CHUNK_BYTES", 16 * 1024)

    def fail_on_third_chunk(done: int, total: int) -> None:
        if done >= 3 * 16 * 1024:
            raise RuntimeError("simulated failure")

    with pytest.raises(RuntimeError, match="simulated"):
        store.import_file(tiny_gguf, progress=fail_on_third_chunk)
    assert stored_files(store) == []
    assert store.list() == []


def test_disk_filling_up_during_the_copy_is_a_storage_error(store, tiny_gguf):
    def disk_full(done: int, total: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match=r"disk full while importing .*needed .* GiB, free"):
        store.import_file(tiny_gguf, progress=disk_full)
    assert stored_files(store) == []
    assert store.list() == []


def test_too_little_free_space_is_refused_before_copying(store, tiny_gguf, monkeypatch):
    monkeypatch.setattr(models.shutil, "disk_usage", lambda _path: _Usage(free=1024))
    with pytest.raises(StorageError, match=r"disk full while importing .*free 0\.00 GiB"):
        store.import_file(tiny_gguf)
    assert stored_files(store) == []


def test_a_stored_file_can_be_registered_again_on_a_full_disk(store, tiny_gguf, monkeypatch):
    store.import_file(tiny_gguf, "first")
    monkeypatch.setattr(models.shutil, "disk_usage", lambda _path: _Usage(free=1024))
    assert store.import_file(tiny_gguf, "second").created
    assert stored_files(store) == [blob_name(tiny_gguf)]


class _Usage:
    def __init__(self, free: int) -> None:
        self.total, self.used, self.free = 10 * free, 9 * free, free


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04" + bytes(100), r"not a GGUF file \(starts with b'PK\\x03\\x04'"),
        (b"GGUF\x03\x00\x00\x00", r"truncated GGUF file"),
        (b"", r"is empty"),
    ],
    ids=["zip", "short-header", "empty"],
)
def test_a_file_that_is_not_gguf_is_refused_before_copying(store, tmp_path, content, message):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelFormatError, match=message) as caught:
        store.import_file(bad)
    assert str(bad) in caught.value.message
    assert stored_files(store) == []
    assert store.list() == []


def test_a_truncated_download_is_refused(store, tiny_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(ModelFormatError, match="truncated GGUF file"):
        store.import_file(cut)
    assert stored_files(store) == []


def test_missing_file_is_not_found_naming_the_path(store, tmp_path):
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(NotFound, match=str(missing)):
        store.import_file(missing)


def test_a_directory_given_as_a_gguf_file_is_refused(store, tmp_path):
    with pytest.raises(UsageError, match=r"is a directory, not a GGUF file"):
        store.import_file(tmp_path)
    assert store.list() == []


def test_a_folder_without_an_onnx_model_is_refused_naming_what_is_missing(store, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ModelFormatError, match=r"no \.onnx file"):
        import_path(store, tmp_path / "photos")
    assert store.list() == []


@pytest.mark.parametrize("name", ["../etc", "", "a b", "-rf", "x" * 129, "ü"])
def test_unsafe_model_names_are_refused(store, tiny_gguf, name):
    with pytest.raises(UsageError, match="invalid model name"):
        store.import_file(tiny_gguf, name)
    assert stored_files(store) == []


def test_models_persist_across_store_instances(tmp_path, tiny_gguf):
    first = ModelStore(tmp_path / "state")
    model = first.import_file(tiny_gguf, "tiny").model
    first.close()
    second = ModelStore(tmp_path / "state")
    assert second.get("tiny") == model
    second.close()


def test_temp_files_of_dead_imports_are_cleaned_at_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    models_dir = tmp_path / "state" / "models"
    models_dir.mkdir(parents=True)
    stale = models_dir / f".import-{dead.stdout.strip()}-abc.partial"
    live = models_dir / f".import-{os.getpid()}-def.partial"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    ModelStore(tmp_path / "state").close()
    assert not stale.exists()
    assert live.exists()


def test_unwritable_state_dir_is_a_storage_error_naming_it(tmp_path):
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    with pytest.raises(StorageError, match=str(a_file)):
        ModelStore(a_file / "state")


# -- get, remove, verify ------------------------------------------------------------------


def test_unknown_model_error_lists_the_installed_names(store, tiny_gguf):
    store.import_file(tiny_gguf, "tiny")
    with pytest.raises(ModelNotFound, match="'deepseek' is not installed; installed: tiny"):
        store.get("deepseek")


def test_unknown_model_in_an_empty_store_says_how_to_import(store):
    with pytest.raises(ModelNotFound, match="appliance models import"):
        store.remove("deepseek")


def test_remove_deletes_the_file_only_when_no_other_name_uses_it(store, tiny_gguf):
    store.import_file(tiny_gguf, "first")
    store.import_file(tiny_gguf, "second")
    removed = store.remove("first")
    assert removed.name == "first"
    assert stored_files(store) == [blob_name(tiny_gguf)]
    store.remove("second")
    assert stored_files(store) == []
    assert store.list() == []


def test_verify_passes_an_intact_file(store, tiny_gguf):
    store.import_file(tiny_gguf, "tiny")
    [result] = store.verify()
    assert (result.name, result.ok) == ("tiny", True)


def test_verify_detects_a_flipped_byte(store, tiny_gguf):
    blob = Path(store.import_file(tiny_gguf, "tiny").model.path)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    [result] = store.verify("tiny")
    assert not result.ok
    assert "damaged" in result.detail


def test_verify_reports_a_missing_file(store, tiny_gguf):
    blob = Path(store.import_file(tiny_gguf, "tiny").model.path)
    blob.unlink()
    [result] = store.verify()
    assert not result.ok
    assert result.detail == f"missing: {blob}"


def test_verify_of_an_unknown_name_is_model_not_found(store):
    with pytest.raises(ModelNotFound):
        store.verify("nope")


def test_files_written_with_other_seeds_are_distinct_models(store, tmp_path):
    paths = [write_tiny_llama(tmp_path / f"m{seed}.gguf", seed=seed) for seed in range(3)]
    for path in paths:
        store.import_file(path)
    assert len(stored_files(store)) == 3
    assert [m.name for m in store.list()] == ["m0", "m1", "m2"]


def test_concurrent_imports_of_one_file_store_it_once(store, tiny_gguf):
    results, failures = [], []

    def work(name: str) -> None:
        try:
            results.append(store.import_file(tiny_gguf, name))
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(f"m{i % 3}",)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(result.created for result in results) == 3  # once per name, then idempotent
    assert stored_files(store) == [blob_name(tiny_gguf)]
