"""The upstreams file: one source of truth, written atomically and readable only by its owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.errors import StorageError, UsageError
from appliance.upstream.registry import UpstreamRegistry, UpstreamSpec, check_name, normalise_url


def test_specs_survive_a_save_and_the_file_is_private(tmp_path: Path) -> None:
    registry = UpstreamRegistry(tmp_path)
    specs = [
        UpstreamSpec(name="r1", url="http://10.0.0.5:8000/v1", api_key="secret"),
        UpstreamSpec(name="r1", url="http://10.0.0.6:8000/v1", model="deepseek-ai/DeepSeek-R1"),
    ]
    registry.save(specs)
    assert registry.load() == specs
    assert stat.S_IMODE(os.stat(registry.path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["upstreams.json"], "no temporary file left"
    assert specs[0].public().has_api_key and "secret" not in specs[0].public().model_dump_json()


def test_no_file_means_no_upstreams(tmp_path: Path) -> None:
    assert UpstreamRegistry(tmp_path).load() == []


def test_a_broken_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "upstreams.json").write_text('{"upstreams": [{"name": 1}]}')
    with pytest.raises(StorageError, match=r"upstreams.json is not a valid upstreams file"):
        UpstreamRegistry(tmp_path).load()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000/v1"),
        ("https://mindie.lan:1025/v1/", "https://mindie.lan:1025/v1"),
        (" http://box:8080/v1 ", "http://box:8080/v1"),
        ("http://gw/openai/v1", "http://gw/openai/v1"),
    ],
)
def test_urls_become_openai_base_urls(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://x/v1", "10.0.0.5:8000", "http:///v1", "http://x/v1?a=1"])
def test_urls_that_are_not_http_base_urls_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        normalise_url(bad)


def test_names_must_be_usable_as_model_names() -> None:
    assert check_name(" deepseek-r1:671b ") == "deepseek-r1:671b"
    with pytest.raises(UsageError, match="not valid"):
        check_name("has space")
