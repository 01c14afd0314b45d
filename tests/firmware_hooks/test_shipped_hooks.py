"""The hooks the box ships, run as the programs the package links into hooks.d, against fake
vendor tools on PATH (recorded `npu-smi` output; `nvidia-smi`'s documented CSV form)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from appliance.firmware_hooks.shipped.compatibility import check, installed_runtimes
from helpers.fake_tools import FakeTools, print_fixture

BIN = Path(sys.executable).parent


def run_hook(name: str, path: str, payload: dict[str, object] | None = None, **env: str):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [str(BIN / f"appliance-hook-{name}")],
        input=json.dumps(payload or {}), capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": path, **env},
    )  # fmt: skip


def test_ascend_health_passes_when_every_chip_is_ok(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path / "bin")
    tools.add("npu-smi", {"info": print_fixture("npu-smi/info-910b3-x8.txt")})
    result = run_hook("ascend-health", tools.path())
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": OK") == 8


def test_ascend_health_fails_naming_the_chip_in_alarm(tmp_path: Path) -> None:
    sick = (Path(__file__).parents[1] / "fixtures" / "npu-smi" / "info-910b3-x1.txt").read_text()
    (tmp_path / "info.txt").write_text(sick.replace("| OK            |", "| Alarm         |", 1))
    tools = FakeTools(tmp_path / "bin")
    tools.add("npu-smi", {"info": f"cat {tmp_path / 'info.txt'}"})
    result = run_hook("ascend-health", tools.path())
    assert result.returncode == 1
    assert "NPU 0 chip 0 (910B3, 0000:c1:00.0): Alarm" in result.stderr
    assert "npu-smi info -t health" in result.stderr


def test_health_and_persistence_hooks_pass_on_a_box_without_the_vendor(tmp_path: Path) -> None:
    empty = FakeTools(tmp_path / "bin").path(rest="/usr/bin:/bin")
    for name in ("ascend-health", "nvidia-persistence"):
        result = run_hook(name, empty)
        assert result.returncode == 0 and "nothing to" in result.stdout


def test_persistence_report_names_the_gpus_left_off_and_how_to_enable_it(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path / "bin")
    csv = "0, 00000000:17:00.0, Enabled\\n1, 00000000:65:00.0, Disabled\\n"
    tools.add("nvidia-smi", {"--query-gpu=index,pci.bus_id,persistence_mode*": f"printf '{csv}'"})
    result = run_hook("nvidia-persistence", tools.path())
    assert result.returncode == 0
    assert "GPU 1 (00000000:65:00.0): persistence mode Disabled" in result.stdout
    assert "off on GPU 1:" in result.stdout and "nvidia-persistenced" in result.stdout


def gpu(driver: str, cuda: str) -> dict[str, object]:
    return {"id": "nvidia0", "kind": "nvidia",
            "details": {"driver_version": driver, "cuda_driver_version": cuda}}  # fmt: skip


RULES = [{"kind": "nvidia", "runtime": "llama.cpp cuda", "min_driver": "525.60.13",
          "min_cuda_driver": "12.0", "why": "CUDA 12", "source": "release notes"}]  # fmt: skip


def test_compatibility_flags_a_driver_older_than_the_cuda_build_needs() -> None:
    passed, problems = check([gpu("470.82.01", "11.4")], {"llama.cpp cuda"}, RULES)
    assert not passed
    assert "driver 470.82.01 is older than the 525.60.13 it needs" in problems[0]
    assert "release notes" in problems[0]
    passed, problems = check([gpu("550.54.15", "12.4")], {"llama.cpp cuda"}, RULES)
    assert passed == ["nvidia0: llama.cpp cuda: ok"] and not problems


def test_compatibility_ignores_rules_of_runtimes_that_are_not_installed() -> None:
    assert check([gpu("470.82.01", "11.4")], {"llama.cpp cpu"}, RULES) == ([], [])


def test_compatibility_hook_on_a_cpu_box_passes_and_sees_the_cpu_runtime() -> None:
    assert "llama.cpp cpu" in installed_runtimes()
    payload = {"devices": [{"id": "cpu0", "kind": "cpu", "details": {}}]}
    result = run_hook("compatibility", os.environ["PATH"], payload)
    assert result.returncode == 0, result.stderr
    assert "no accelerator with a runtime" in result.stdout
