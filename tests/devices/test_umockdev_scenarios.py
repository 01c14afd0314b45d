"""`appliance devices --json` under umockdev: the real discovery (pyudev, /dev nodes, version
files, vendor tools on PATH) against described hosts. Device files: tests/fixtures/umockdev/,
tool outputs: tests/fixtures/npu-smi and nvidia-smi (sources in tests/fixtures/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.fake_tools import HANG, FakeTools, print_fixture
from helpers.runtime import RUNTIME_CACHE
from helpers.umockdev import FIXTURES, have_umockdev, run_under

NPU_SMI = {
    "ascend-910b-x1": "npu-smi/info-910b3-x1.txt",
    "ascend-910b-x8": "npu-smi/info-910b3-x8.txt",
    "ascend-310p-duo": "npu-smi/info-310p3-duo-25.2.0.txt",
}


def discover(tmp_path: Path, scenario: str, tools: FakeTools) -> list[dict[str, object]]:
    assert have_umockdev(), "umockdev is a test dependency (Debian package umockdev; .ci/run)"
    env = {
        "PATH": tools.path(),
        "APPLIANCE_HOME": str(tmp_path / "home"),  # no daemon there: direct discovery
        "APPLIANCE_DEVICES__ASCEND_HOME": str(FIXTURES / "ascend-home"),
        "APPLIANCE_DEVICES__TOOL_TIMEOUT_S": "1",
        "APPLIANCE_RUNTIME__CACHE_DIR": str(RUNTIME_CACHE),  # the session's self-test verdict
    }
    result = run_under(FIXTURES / "umockdev" / f"{scenario}.umockdev", ["devices", "--json"], env)
    assert result.returncode == 0, result.stderr
    return [d for d in json.loads(result.stdout)["devices"] if d["kind"] != "cpu"]


@pytest.fixture
def tools(tmp_path: Path) -> FakeTools:
    return FakeTools(tmp_path / "bin")


def brief(devices: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(d["id"], d["name"], d["usable"], d["memory_total_mib"]) for d in devices]


def test_one_910b(tmp_path: Path, tools: FakeTools) -> None:
    tools.add("npu-smi", {"info": print_fixture(NPU_SMI["ascend-910b-x1"])})

    [npu] = discover(tmp_path, "ascend-910b-x1", tools)

    assert brief([npu]) == [("ascend0", "Ascend 910B3", True, 65536)]
    assert npu["reason"] == (
        "usable: Ascend 910B3, 64 GiB, driver 25.0.rc1.1, firmware 7.7.0.1.231, CANN 8.2.RC1"
    )
    assert npu["details"]["numa_node"] == 6  # type: ignore[index]


def test_eight_910b(tmp_path: Path, tools: FakeTools) -> None:
    tools.add("npu-smi", {"info": print_fixture(NPU_SMI["ascend-910b-x8"])})

    found = discover(tmp_path, "ascend-910b-x8", tools)

    assert brief(found) == [(f"ascend{i}", "Ascend 910B3", True, 65536) for i in range(8)]
    assert [d["pci_address"] for d in found][:2] == ["0000:01:00.0", "0000:02:00.0"]


def test_a_310p_duo_card(tmp_path: Path, tools: FakeTools) -> None:
    tools.add("npu-smi", {"info": print_fixture(NPU_SMI["ascend-310p-duo"])})

    found = discover(tmp_path, "ascend-310p-duo", tools)

    assert brief(found) == [("ascend0", "Ascend 310P3", True, 44280 + 43693)]


def test_one_h100_read_through_nvidia_smi_when_nvml_is_absent(
    tmp_path: Path, tools: FakeTools
) -> None:
    tools.add("nvidia-smi", {"--query-gpu*": print_fixture("nvidia-smi/query-h100.csv")})

    [gpu] = discover(tmp_path, "nvidia-h100", tools)

    assert brief([gpu]) == [("nvidia0", "NVIDIA H100 80GB HBM3", True, 81559)]
    assert gpu["details"]["source"] == "nvidia-smi"  # type: ignore[index]


def test_h100_beside_the_ibmc_vga_and_an_nvswitch_is_the_only_accelerator(
    tmp_path: Path, tools: FakeTools
) -> None:
    [gpu] = discover(tmp_path, "nvidia-h100-ibmc", tools)  # no NVML, no nvidia-smi

    assert brief([gpu]) == [("nvidia0", "NVIDIA H100 PCIe", False, 0)]
    assert str(gpu["reason"]).startswith(
        "kernel driver nvidia is bound to the GPU on PCI 0000:82:00.0, but neither NVML nor "
        "nvidia-smi works"
    )


def test_a_box_without_accelerators_lists_only_the_cpu(tmp_path: Path, tools: FakeTools) -> None:
    assert discover(tmp_path, "none", tools) == []


def test_a_hung_npu_smi_under_umockdev_still_lists_the_npus(
    tmp_path: Path, tools: FakeTools
) -> None:
    tools.add("npu-smi", {"info": HANG})

    found = discover(tmp_path, "ascend-910b-x8", tools)

    assert len(found) == 8
    assert all(
        str(d["reason"]).endswith("no live telemetry: npu-smi hung and was killed after 1 s")
        for d in found
    )
