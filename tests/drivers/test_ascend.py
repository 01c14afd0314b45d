"""drivers/ascend.py: the real driver against a temporary sysfs, /dev, Ascend install and a
fake `npu-smi` printing recorded outputs (and misbehaving ones).

PCI ids are real (accelerators.md 1.1); the iBMC VGA chip 19e5:1711 sits beside 910B cards on
Huawei servers (tests/fixtures/README.md).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fake_sysfs import FakeSysfs

from appliance.config import Config
from appliance.drivers.ascend import AscendDriver
from appliance.drivers.ascend_host import node_problem, read_versions
from appliance.drivers.nvidia import NvidiaDriver
from appliance.drivers.pci import VENDOR_HUAWEI
from appliance.placement import place_model
from appliance.records import CpuRuntimeChoice, DeviceKind, ModelFormat, ModelInfo, RuntimeReport
from helpers.fake_tools import EMPTY, FAIL, FIXTURES, GARBLED, HANG, FakeTools, print_fixture

ACCELERATOR = 0x120000
VGA = 0x030000
DRIVER = "devdrv_device_driver"


class Box:
    """A temporary Ascend host: sysfs, /dev, /usr/local/Ascend and PATH with a fake npu-smi."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sysfs = FakeSysfs(root / "sys")
        self.dev = root / "dev"
        self.dev.mkdir()
        self.home = root / "Ascend"
        shutil.copytree(FIXTURES / "ascend-home", self.home)
        self.tools = FakeTools(root / "bin")
        monkeypatch.setenv("PATH", self.tools.path())
        monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES", raising=False)

    def nodes(self, count: int) -> None:
        for name in ["davinci_manager", "devmm_svm", "hisi_hdc"] + [
            f"davinci{i}" for i in range(count)
        ]:
            (self.dev / name).touch()

    def driver(self, timeout_s: float = 5.0, **env: str) -> AscendDriver:
        return AscendDriver(
            self.sysfs.root,
            ascend_home=self.home,
            dev_root=self.dev,
            tool_timeout_s=timeout_s,
            env=env or None,
        )


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    return Box(tmp_path, monkeypatch)


def one_910b(box: Box, info: str = print_fixture("npu-smi/info-910b3-x1.txt")) -> None:
    box.sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR, driver=DRIVER)
    box.nodes(1)
    box.tools.add("npu-smi", {"info": info})


def test_one_910b_is_usable_with_name_memory_and_every_version(box: Box) -> None:
    one_910b(box)

    [npu] = box.driver().discover()

    assert (npu.id, npu.kind, npu.vendor, npu.name) == (
        "ascend0", DeviceKind.ASCEND, "Huawei", "Ascend 910B3",
    )  # fmt: skip
    assert npu.usable is True
    assert npu.memory_total_mib == 65536
    assert npu.reason == (
        "usable: Ascend 910B3, 64 GiB, driver 25.0.rc1.1, firmware 7.7.0.1.231, CANN 8.2.RC1"
    )
    assert npu.details["chips"] == [{"npu_id": 0, "chip_id": 0, "name": "910B3", "logical_id": 0}]


def test_eight_910b_telemetry_comes_from_one_npu_smi_run(box: Box) -> None:
    for index, bus in enumerate(["01", "02", "41", "42", "81", "82", "c1", "c2"]):
        box.sysfs.add_pci(f"0000:{bus}:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR, driver=DRIVER,
                          numa_node=index // 2)  # fmt: skip
    box.nodes(8)
    box.tools.add("npu-smi", {"info": print_fixture("npu-smi/info-910b3-x8.txt")})
    driver = box.driver()
    found = driver.discover()
    before = len(box.tools.calls())

    samples = driver.telemetry_all(found)

    assert [npu.id for npu in found] == [f"ascend{i}" for i in range(8)]
    assert all(npu.usable for npu in found)
    assert len(box.tools.calls()) - before == 1
    by_id = {sample.device_id: sample for sample in samples}
    # PCI order puts 0000:c1:00.0 seventh; npu-smi calls it NPU 0 (102.8 W, 55 °C).
    assert (by_id["ascend6"].power_w, by_id["ascend6"].temperature_c) == (102.8, 55.0)
    assert (by_id["ascend6"].memory_used_mib, by_id["ascend6"].memory_total_mib) == (3338, 65536)
    assert by_id["ascend6"].health == "OK"


def test_300i_duo_is_one_card_with_two_chips_and_summed_memory(box: Box) -> None:
    box.sysfs.add_pci("0000:01:00.0", VENDOR_HUAWEI, 0xD500, ACCELERATOR, driver=DRIVER)
    box.nodes(2)
    box.tools.add("npu-smi", {"info": print_fixture("npu-smi/info-310p3-duo-25.2.0.txt")})
    driver = box.driver()

    [npu] = driver.discover()
    [sample] = driver.telemetry_all([npu])

    assert npu.name == "Ascend 310P3"
    assert npu.memory_total_mib == 44280 + 43693
    assert npu.reason.startswith("usable: 2 x Ascend 310P3, 86 GiB, driver 25.0.rc1.1")
    assert [chip["logical_id"] for chip in npu.details["chips"]] == [0, 1]  # type: ignore[union-attr]
    assert sample.power_w is None  # 310P reports power per card only in `-t common`
    assert (sample.memory_used_mib, sample.temperature_c) == (1529 + 1412, 45.0)


def test_missing_device_nodes_mean_the_driver_is_not_loaded(box: Box) -> None:
    one_910b(box)
    for node in box.dev.iterdir():
        node.unlink()

    [npu] = box.driver().discover()

    assert npu.usable is False
    assert npu.reason.startswith("the Ascend driver's device nodes are missing (")
    assert "install or reinstall the Ascend driver package (npu-driver) and reboot" in npu.reason


def test_unbound_npu_asks_for_the_driver_package(box: Box) -> None:
    box.sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR)
    box.nodes(1)

    [npu] = box.driver().discover()

    assert npu.usable is False
    assert npu.reason == (
        "the NPU on PCI 0000:c1:00.0 has no kernel driver bound: install the Ascend driver "
        "package (Ascend-hdk-*-npu-driver) and reboot"
    )


def test_firmware_outside_the_drivers_window_is_reported(box: Box) -> None:
    one_910b(box)
    (box.home / "firmware" / "version.info").write_text("Version=6.4.12.1.241\n")

    [npu] = box.driver().discover()

    assert npu.usable is False
    assert npu.reason == (
        "firmware 6.4.12.1.241 is outside what driver 25.0.rc1.1 accepts (7.0.0 to 7.7.99): "
        "install the firmware package that matches the driver"
    )


def test_critical_health_is_explained_with_the_health_query(box: Box) -> None:
    critical = "sed 's/| OK  /| Critical/' " + str(FIXTURES / "npu-smi/info-910b3-x1.txt")
    one_910b(box, info=critical)
    box.tools.add("npu-smi", {
        "info": critical,
        "info -t health -i 0": "printf 'Health : Critical\\nError Code : 80E18005\\n"
                               "Error Information : HBM ECC\\n'",
    })  # fmt: skip

    [npu] = box.driver().discover()

    assert npu.usable is False
    assert npu.reason.startswith(
        "npu-smi reports health Critical, error code 80E18005: HBM ECC for NPU 0 chip 0"
    )


def test_ascend_rt_visible_devices_hides_an_unlisted_npu(box: Box) -> None:
    one_910b(box)

    [npu] = box.driver(ASCEND_RT_VISIBLE_DEVICES="1,2").discover()

    assert npu.usable is False
    assert npu.reason == (
        "hidden by ASCEND_RT_VISIBLE_DEVICES=1,2 (logical id 0 is not listed); add 0 or "
        "unset the variable in the service environment"
    )


def test_cann_missing_keeps_the_npu_usable_but_says_runtimes_need_it(box: Box) -> None:
    one_910b(box)
    shutil.rmtree(box.home / "ascend-toolkit")

    [npu] = box.driver().discover()

    assert npu.usable is True
    assert "CANN not installed (NPU runtimes need the CANN toolkit" in npu.reason


@pytest.mark.parametrize(
    ("behaviour", "problem"),
    [
        (EMPTY, "npu-smi printed nothing"),
        (FAIL, "npu-smi failed with exit status 3: dcmi module initialize failed. ret is -8005"),
        (GARBLED, "npu-smi answered, but its table had no NPU rows this version can read"),
        (HANG, "npu-smi hung and was killed after 0.5 s"),
    ],
)
def test_a_broken_npu_smi_gives_a_device_with_a_reason_never_an_exception(
    box: Box, behaviour: str, problem: str
) -> None:
    one_910b(box, info=behaviour)
    driver = box.driver(timeout_s=0.5)
    started = time.monotonic()

    [npu] = driver.discover()
    [sample] = driver.telemetry_all([npu])

    assert time.monotonic() - started < 10  # a hung tool costs its timeout, not forever
    assert npu.name == "Ascend 910B"  # from the PCI id, since npu-smi could not say
    assert npu.usable is True
    assert npu.reason.endswith(f"; no live telemetry: {problem}")
    assert (sample.available, sample.error) == (False, problem)


def test_missing_npu_smi_is_named_as_not_installed(box: Box) -> None:
    box.sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR, driver=DRIVER)
    box.nodes(1)

    [npu] = box.driver().discover()

    assert npu.details["npu_smi"] == "npu-smi is not installed (not found on PATH)"


def test_node_without_group_permission_asks_to_join_hwhiaiuser(tmp_path: Path) -> None:
    node = tmp_path / "davinci0"
    node.touch()
    node.chmod(0o660)  # crw-rw---- HwHiAiUser:HwHiAiUser on a real host (accelerators.md 1.3)

    assert node_problem(str(node), euid=1000, groups=[1000]) == (
        f"permission denied on {node} (mode -rw-rw----, gid {node.stat().st_gid})"
    )
    assert node_problem(str(node), euid=1000, groups=[node.stat().st_gid]) is None
    assert node_problem(str(node), euid=0, groups=[]) is None


def test_version_files_of_older_drivers_without_package_version_still_read(tmp_path: Path) -> None:
    (tmp_path / "driver").mkdir()
    (tmp_path / "driver" / "version.info").write_text("Version=24.1.rc1\n")
    (tmp_path / "ascend-toolkit" / "latest").mkdir(parents=True)
    (tmp_path / "ascend-toolkit" / "latest" / "version.cfg").write_text(
        "# version: 1.0\nruntime_running_version=[7.6.0.1.220:8.0.0]\n"
    )

    versions = read_versions(tmp_path)

    assert (versions.driver, versions.firmware, versions.cann) == ("24.1.rc1", None, "8.0.0")


def test_ibmc_vga_chip_is_not_taken_for_an_npu(box: Box) -> None:
    # Huawei's vendor id on a display-class function: the BMC's graphics, not an accelerator.
    box.sysfs.add_pci("0000:02:00.0", VENDOR_HUAWEI, 0x1711, VGA)
    box.sysfs.add_pci("0000:08:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR)

    assert [npu.pci_address for npu in box.driver().discover()] == ["0000:08:00.0"]
    assert NvidiaDriver(box.sysfs.root).discover() == []  # nor for a GPU, though its class is 0x03


def test_box_with_only_the_ibmc_vga_chip_runs_no_tool(box: Box) -> None:
    box.sysfs.add_pci("0000:02:00.0", VENDOR_HUAWEI, 0x1711, VGA)
    box.tools.add("npu-smi", {"info": EMPTY})

    assert box.driver().discover() == []
    assert box.tools.calls() == []


def test_sriov_virtual_functions_are_not_counted_as_cards(box: Box) -> None:
    box.sysfs.add_pci("0000:c1:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR)
    box.sysfs.add_pci("0000:c1:00.4", VENDOR_HUAWEI, 0xD802, ACCELERATOR, physfn="0000:c1:00.0")

    assert [npu.pci_address for npu in box.driver().discover()] == ["0000:c1:00.0"]


def test_oem_branded_ascend_card_needs_the_accelerator_class(box: Box) -> None:
    box.sysfs.add_pci("0000:01:00.0", 0x20C6, 0xD500, ACCELERATOR)
    box.sysfs.add_pci("0000:02:00.0", 0x20C6, 0xD500, VGA)

    assert [npu.name for npu in box.driver().discover()] == ["Ascend 310P"]


CANN_RUNTIME = RuntimeReport(
    llama_cpp_version="0.3.36", llama_cpp_backends=["CPU", "CANN"], llama_cpp_runtime="cann",
    llama_cpp_dir="/rt/cann", llama_cpp_accelerator_libs=["/rt/cann/libggml-cann.so"],
    cpu_variant=CpuRuntimeChoice(variant="armv8.2_2", path="/rt/cann/v.so", reason="test"),
)  # fmt: skip
Q4_0_MODEL = ModelInfo(
    name="r1-q4_0", format=ModelFormat.GGUF, path="/m.gguf", sha256="0", size_bytes=2**30,
    quantization="Q4_0", tensor_types={"Q4_0": 100},
)  # fmt: skip


def test_a_model_placed_on_one_of_eight_npus_sees_only_that_npu(box: Box) -> None:
    for index, bus in enumerate(["01", "02", "41", "42", "81", "82", "c1", "c2"]):
        box.sysfs.add_pci(f"0000:{bus}:00.0", VENDOR_HUAWEI, 0xD802, ACCELERATOR, driver=DRIVER,
                          numa_node=index // 2)  # fmt: skip
    box.nodes(8)
    box.tools.add("npu-smi", {"info": print_fixture("npu-smi/info-910b3-x8.txt")})
    npus = box.driver().discover()

    placed = place_model(Q4_0_MODEL, npus, CANN_RUNTIME, Config())

    chips = {npu.id: npu.details["chips"] for npu in npus}
    [chip] = chips[placed.device_id]  # type: ignore[misc]
    assert placed.backend == "CANN"
    # llama.cpp sees one device, so it cannot spread the model over all eight.
    assert placed.env == {"ASCEND_RT_VISIBLE_DEVICES": str(chip["logical_id"])}
    assert placed.backend_libs[-1] == "/rt/cann/libggml-cann.so"


def test_a_two_chip_300i_duo_card_exposes_both_of_its_chips(box: Box) -> None:
    box.sysfs.add_pci("0000:01:00.0", VENDOR_HUAWEI, 0xD500, ACCELERATOR, driver=DRIVER)
    box.nodes(2)
    box.tools.add("npu-smi", {"info": print_fixture("npu-smi/info-310p3-duo-25.2.0.txt")})
    [card] = box.driver().discover()

    placed = place_model(Q4_0_MODEL, [card], CANN_RUNTIME, Config())

    assert placed.env == {"ASCEND_RT_VISIBLE_DEVICES": "0,1"}
