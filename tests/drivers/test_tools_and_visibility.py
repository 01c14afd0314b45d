"""drivers/tools.py (vendor tools that can hang) and drivers/visible.py (the env variables)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.drivers.tools import run_tool
from appliance.drivers.visible import ascend_hidden, cuda_hidden
from helpers.fake_tools import FakeTools


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    fake = FakeTools(tmp_path / "bin")
    monkeypatch.setenv("PATH", fake.path())
    return fake


def test_a_hung_tool_and_the_helper_it_spawned_are_both_killed(tools: FakeTools) -> None:
    # The helper keeps stdout open: killing only the direct child would still hang the read.
    tools.add("npu-smi", {"info": "sleep 30 & wait"})
    started = time.monotonic()

    result = run_tool(["npu-smi", "info"], timeout_s=0.5)

    assert time.monotonic() - started < 5
    assert result.problem == "npu-smi hung and was killed after 0.5 s"


def test_missing_failing_and_silent_tools_each_say_so(tools: FakeTools) -> None:
    tools.add("nvidia-smi", {"fail": "echo 'NVIDIA-SMI has failed' >&2; exit 9", "quiet": "true"})

    assert (
        run_tool(["npu-smi", "info"], 1).problem == "npu-smi is not installed (not found on PATH)"
    )
    assert run_tool(["nvidia-smi", "fail"], 1).problem == (
        "nvidia-smi failed with exit status 9: NVIDIA-SMI has failed"
    )
    assert run_tool(["nvidia-smi", "quiet"], 1).problem == "nvidia-smi printed nothing"


@pytest.mark.parametrize(
    ("value", "visible"),
    [(None, {0, 1, 2}), ("1,2", {1, 2}), ("0,x,2", {0}), ("", set()), ("2", {2})],
)
def test_ascend_visible_devices_lists_logical_ids_and_stops_at_garbage(
    value: str | None, visible: set[int]
) -> None:
    env = {} if value is None else {"ASCEND_RT_VISIBLE_DEVICES": value}

    assert {i for i in range(3) if ascend_hidden(env, i) is None} == visible


@pytest.mark.parametrize(
    ("value", "visible"),
    [(None, {0, 1}), ("1", {1}), ("GPU-bbb", {1}), ("-1,0", set()), ("", set()), ("0,1", {0, 1})],
)
def test_cuda_visible_devices_takes_indexes_or_uuid_prefixes(
    value: str | None, visible: set[int]
) -> None:
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    uuids = ["GPU-aaa-1", "GPU-bbb-2"]

    assert {i for i in range(2) if cuda_hidden(env, i, uuids[i]) is None} == visible
