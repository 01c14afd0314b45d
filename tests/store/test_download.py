"""Importing from a URL: a real HTTP server in a thread, dropped connections, Range resume."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import ModelFormatError, NotFound, StorageError, UsageError
from appliance.store import ModelStore
from appliance.store.download import DownloadError, import_url, partial_paths
from helpers.range_server import RangeServer
from helpers.tiny_gguf import write_tiny_model


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ModelStore]:
    model_store = ModelStore(tmp_path / "state")
    yield model_store
    model_store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RangeServer, Path]]:
    folder = tmp_path / "www"
    folder.mkdir()
    model = write_tiny_model(folder / "Tiny-R1-Qwen-Q8_0.gguf", "qwen2")
    with RangeServer(folder) as server:
        yield server, model


def leftovers(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.models_dir.iterdir() if p.name != "blobs")


def test_a_url_import_registers_the_model_with_its_url_as_source(store, served):
    server, model = served
    url = server.url(model.name)
    result = import_url(store, url)
    assert result.created
    assert result.model.name == "tiny-r1-qwen-q8_0"
    assert result.model.source == url
    assert result.model.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert result.model.architecture == "qwen2"
    assert leftovers(store) == []


def test_a_connection_dropped_half_way_resumes_with_a_range_request(store, served):
    server, model = served
    size = model.stat().st_size
    server.drop_after[model.name] = [size // 2]
    seen: list[tuple[int, int]] = []
    result = import_url(
        store,
        server.url(model.name),
        "tiny",
        backoff_s=0,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert result.model.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert server.ranges == [None, f"bytes={size // 2}-"]
    assert seen[-1] == (size, size)
    assert [r.ok for r in store.verify("tiny")] == [True]


def test_a_failed_import_keeps_the_partial_and_the_next_import_resumes_it(store, served):
    server, model = served
    size = model.stat().st_size
    # The first attempt makes progress (which resets the count), then three in a row fail.
    server.drop_after[model.name] = [size // 3, 0, 0, 0]
    with pytest.raises(DownloadError, match=r"gave up after 3 failed attempts.*resumes"):
        import_url(store, server.url(model.name), "tiny", backoff_s=0, max_failures=3)
    part, _sidecar = partial_paths(store.models_dir, server.url(model.name))
    assert part.stat().st_size == size // 3
    assert store.list() == []
    # Later (another process, say): the same URL continues from byte size // 3.
    result = import_url(store, server.url(model.name), "tiny", backoff_s=0)
    assert result.created and server.ranges[-1] == f"bytes={size // 3}-"
    assert leftovers(store) == []


def test_a_changed_file_on_the_server_restarts_instead_of_splicing(store, served):
    server, model = served
    size = model.stat().st_size
    server.drop_after[model.name] = [size // 2, 0]
    with pytest.raises(DownloadError):
        import_url(store, server.url(model.name), "tiny", backoff_s=0, max_failures=1)
    write_tiny_model(model, "qwen2", seed=7)  # same size, new bytes, new ETag
    result = import_url(store, server.url(model.name), "tiny", backoff_s=0)
    assert result.model.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()


def test_a_server_without_range_support_sends_the_whole_file_again(tmp_path, store):
    (tmp_path / "www").mkdir()
    model = write_tiny_model(tmp_path / "www" / "m.gguf", "llama")
    with RangeServer(tmp_path / "www", ranges=False) as server:
        server.drop_after["m.gguf"] = [1000]
        result = import_url(store, server.url("m.gguf"), backoff_s=0)
    assert result.model.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()


def test_a_wrong_digest_discards_the_download_and_registers_nothing(store, served):
    server, model = served
    with pytest.raises(ModelFormatError, match="does not match the expected 0000"):
        import_url(store, server.url(model.name), sha256="0" * 64)
    assert store.list() == [] and leftovers(store) == []
    assert list(store.blobs_dir.iterdir()) == []


def test_the_right_digest_is_accepted(store, served):
    server, model = served
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert import_url(store, server.url(model.name), sha256=digest.upper()).created


def test_server_errors_are_retried_a_bounded_number_of_times(store, served):
    server, model = served
    server.fail_status = [503, 502]
    assert import_url(store, server.url(model.name), backoff_s=0).created
    server.fail_status = [503] * 10
    with pytest.raises(DownloadError, match="gave up after 2"):
        import_url(store, server.url(model.name), "other", backoff_s=0, max_failures=2)


def test_a_missing_file_on_the_server_is_not_found_at_once(store, served):
    server, _model = served
    with pytest.raises(NotFound, match="404"):
        import_url(store, server.url("nothing.gguf"), backoff_s=0)
    assert server.ranges == [None]


def test_a_downloaded_page_that_is_not_a_model_is_refused_and_removed(store, served):
    server, _model = served
    (server.folder / "index.html").write_text("<!DOCTYPE html><html>login</html>")
    with pytest.raises(ModelFormatError, match="HTML"):
        import_url(store, server.url("index.html"), "page")
    assert leftovers(store) == []


def test_only_http_urls_are_accepted(store):
    with pytest.raises(UsageError, match="only http"):
        import_url(store, "ftp://files/model.gguf", "m")


def test_an_unreachable_server_gives_up_with_a_clear_error(store):
    with pytest.raises(DownloadError, match="gave up"):
        import_url(store, "http://127.0.0.1:9/model.gguf", backoff_s=0, max_failures=2)


def test_a_server_that_sends_no_size_still_imports_and_leaves_nothing_behind(tmp_path, store):
    folder = tmp_path / "www"
    folder.mkdir()
    model = write_tiny_model(folder / "tiny.gguf", "llama")
    with RangeServer(folder, sized=False) as server:
        result = import_url(store, server.url(model.name), "tiny")
    assert result.model.size_bytes == model.stat().st_size
    assert leftovers(store) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB tmpfs: less than one room check (64 MiB) plus the store's 64 MiB margin."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_download_without_a_size_checks_free_room_and_keeps_no_partial(tmp_path, small_disk):
    folder = tmp_path / "www"
    folder.mkdir()
    model = write_tiny_model(folder / "tiny.gguf", "llama")
    store = ModelStore(small_disk / "state")
    try:
        with RangeServer(folder, sized=False) as server, pytest.raises(StorageError) as caught:
            import_url(store, server.url(model.name), "tiny")
        assert caught.value.message.startswith("disk full while importing")
        assert leftovers(store) == [], "a disk too small stays too small: no .part to resume"
        assert store.list() == []
    finally:
        store.close()
