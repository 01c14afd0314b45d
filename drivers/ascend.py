"""Huawei Ascend NPUs: PCI gate, device nodes, version files, then `npu-smi` for names and load.

May import only `appliance.records` and sibling helpers, never another vendor module.
Records are per PCI function in PCI order (`ascend0` ...); a function with two chips (Atlas
300I Duo) lists both under `chips`. Details keys: `pci_id`, `pci_class`, `kernel_driver`,
`numa_node`, `chip`, `chips` (npu-smi `npu_id`, `chip_id`, `name`, `logical_id`),
`driver_version`, `firmware_version`, `cann_version`, `npu_smi` (the tool's problem, if any).
DCMI (libdcmi.so) is not used yet: no recording of it exists to test against.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from appliance.records import Accelerator, DeviceKind, Telemetry

from . import ascend_host, npu_smi
from .base import Driver
from .pci import CLASS_ACCELERATOR, CLASS_PROCESSOR, VENDOR_HUAWEI, PciDevice, scan_pci
from .tools import run_tool
from .visible import ascend_hidden

# NPU device ids from the Ascend driver's PCI tables (mirror `verylucky01/driver`,
# `dcmi_common.h` and `devdrv_pci.h`; see shared/reference/accelerators.md 1.1). Matching by
# device id matters: Huawei's vendor id also covers NICs, SSDs and the iBMC's VGA chip
# (19e5:1711), none of which can run a model.
NPU_CHIPS: dict[int, str] = {
    0xD100: "Ascend 310",
    0xD105: "Ascend 310B",
    0xD500: "Ascend 310P",
    0xD501: "Ascend 310P",  # 2P variant
    0xD801: "Ascend 910",
    0xD802: "Ascend 910B",
    0xD803: "Ascend 910C",
    0xD804: "Ascend 910B",  # 2P variant
    0xD805: "Ascend 910B",  # virtual function, seen as a device inside a VM
    0xD806: "Ascend 950",
    0xD807: "Ascend (unreleased part d807)",
    0xD808: "Ascend (unreleased part d808)",
}

# OEM-branded cards carry other vendor ids with the same device ids (the driver binds 0x20C6,
# 0x203F and 0x20E9, `xsmem_modprobe_adapt.c`); for those the accelerator class is required too,
# since a foreign vendor's device id says nothing on its own.
OEM_VENDORS = frozenset({0x20C6, 0x203F, 0x20E9})
NPU_CLASSES = frozenset({CLASS_ACCELERATOR, CLASS_PROCESSOR})
KERNEL_DRIVER = "devdrv_device_driver"
BAD_HEALTH = ("Alarm", "Critical", "UNKNOWN")


def is_ascend_npu(device: PciDevice) -> bool:
    """An Ascend NPU function (physical functions only, so that a card counts once)."""
    if device.is_virtual_function or device.device_id not in NPU_CHIPS:
        return False
    if device.vendor_id == VENDOR_HUAWEI:
        return True
    return device.vendor_id in OEM_VENDORS and device.base_class in NPU_CLASSES


class AscendDriver(Driver):
    """Ascend NPUs on PCI, checked against the host install and described by `npu-smi`."""

    name = "ascend"

    def __init__(
        self,
        sys_root: str | Path | None = None,
        *,
        ascend_home: str | Path = "/usr/local/Ascend",
        tool_timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        dev_root: str | Path = "/dev",
    ) -> None:
        self._sys_root = sys_root
        self._dev_root = dev_root
        self._home = ascend_home
        self._timeout = tool_timeout_s
        self._env = env

    def discover(self) -> list[Accelerator]:
        npus = [device for device in scan_pci(self._sys_root) if is_ascend_npu(device)]
        if not npus:
            return []  # the cheap gate: no NPU function, no tool is run
        env = os.environ if self._env is None else self._env
        versions = ascend_host.read_versions(self._home)
        info, smi_problem = self._info()
        versions.driver = versions.driver or info.driver_version
        if info.chips and not versions.firmware:
            board = run_tool(
                ["npu-smi", "info", "-t", "board", "-i", str(info.chips[0].npu_id)], self._timeout
            )
            versions.firmware = npu_smi.board_versions(board.stdout).get("firmware")
        ordered = sorted(info.chips, key=lambda chip: (chip.npu_id, chip.chip_id))
        logical = {id(chip): index for index, chip in enumerate(ordered)}
        records, node = [], 0
        for index, pci in enumerate(npus):
            chips = [chip for chip in ordered if chip.bus_id == pci.address]
            # /dev/davinciN is numbered by physical id (accelerators.md 1.3), which only DCMI
            # maps to a bus id; N chips need davinci0..N-1 on the recorded hosts, so the check
            # is right for the box even where the node blamed may be another chip's.
            nodes = list(range(node, node + max(1, len(chips))))
            node += len(nodes)
            ids = [logical[id(chip)] for chip in chips] or [index]
            problem = self._problem(pci, chips, nodes, ids, versions, env)
            records.append(_record(index, pci, chips, ids, versions, problem, smi_problem))
        return records

    def telemetry(self, device: Accelerator) -> Telemetry:
        return self.telemetry_all([device])[0]

    def telemetry_all(self, devices: Sequence[Accelerator]) -> list[Telemetry]:
        info, problem = self._info()
        samples = []
        for device in devices:
            chips = [chip for chip in info.chips if chip.bus_id == device.pci_address]
            if not chips:
                why = problem or "npu-smi no longer lists this NPU"
                samples.append(
                    Telemetry(
                        device_id=device.id, timestamp=time.time(), available=False, error=why
                    )
                )
                continue
            samples.append(self._sample(device, chips))
        return samples

    def _info(self) -> tuple[npu_smi.NpuInfo, str]:
        result = run_tool(["npu-smi", "info"], self._timeout)
        if not result.ok:
            return npu_smi.NpuInfo(None, []), result.problem
        info = npu_smi.parse_info(result.stdout)
        if not info.chips:
            return info, "npu-smi answered, but its table had no NPU rows this version can read"
        return info, ""

    def _problem(
        self,
        pci: PciDevice,
        chips: list[npu_smi.NpuChip],
        nodes: list[int],
        logical_ids: list[int],
        versions: ascend_host.Versions,
        env: Mapping[str, str],
    ) -> str | None:
        """The first thing that stops a model running here, in the order an admin fixes them."""
        if pci.driver != KERNEL_DRIVER:
            bound = f"is bound to {pci.driver}" if pci.driver else "has no kernel driver bound"
            return (
                f"the NPU on PCI {pci.address} {bound}: install the Ascend driver package "
                "(Ascend-hdk-*-npu-driver) and reboot"
            )
        problem = ascend_host.nodes_problem(nodes, self._dev_root)
        problem = problem or ascend_host.firmware_problem(versions)
        if problem:
            return problem
        for chip in chips:
            if chip.health in BAD_HEALTH:
                args = ["npu-smi", "info", "-t", "health", "-i", str(chip.npu_id)]
                detail = npu_smi.health_detail(run_tool(args, self._timeout).stdout)
                return (
                    f"npu-smi reports {detail or 'health ' + chip.health} for NPU "
                    f"{chip.npu_id} chip {chip.chip_id}: see `npu-smi info -t health -i "
                    f"{chip.npu_id}` and the driver log (/var/log/npu)"
                )
        hidden = [ascend_hidden(env, logical) for logical in logical_ids]
        if all(hidden):
            return hidden[0]
        return None

    def _sample(self, device: Accelerator, chips: list[npu_smi.NpuChip]) -> Telemetry:
        used = [chip.memory_used_mib for chip in chips if chip.memory_used_mib is not None]
        total = [chip.memory_total_mib for chip in chips if chip.memory_total_mib is not None]
        if not total:  # some layouts leave the pair out; the usages form has a rate instead
            args = ["npu-smi", "info", "-t", "usages", "-i", str(chips[0].npu_id)]
            memory = npu_smi.usages_memory(run_tool(args, self._timeout).stdout)
            if memory:
                total, used = [memory[0]], [int(memory[0] * memory[1] / 100)]
        power = [chip.power_w for chip in chips if chip.power_w is not None]
        heat = [chip.temperature_c for chip in chips if chip.temperature_c is not None]
        load = [chip.aicore_pct for chip in chips if chip.aicore_pct is not None]
        worst = next((c.health for c in chips if c.health != "OK"), chips[0].health)
        return Telemetry(
            device_id=device.id,
            timestamp=time.time(),
            utilization_pct=sum(load) / len(load) if load else None,
            memory_used_mib=sum(used) if used else None,
            memory_total_mib=sum(total) if total else None,
            temperature_c=max(heat) if heat else None,
            # 910C and 310P report power on one chip only (`-` or NA on the others).
            power_w=sum(power) if power else None,
            health=worst,
        )


def _record(
    index: int,
    pci: PciDevice,
    chips: list[npu_smi.NpuChip],
    logical_ids: list[int],
    versions: ascend_host.Versions,
    problem: str | None,
    smi_problem: str,
) -> Accelerator:
    family = NPU_CHIPS[pci.device_id]
    name = f"Ascend {chips[0].name.removeprefix('Ascend')}" if chips else family
    memory = sum(chip.memory_total_mib or 0 for chip in chips)
    if problem is None:
        facts = [name if len(chips) < 2 else f"{len(chips)} x {name}"]
        if memory:
            facts.append(f"{memory / 1024:.0f} GiB")
        facts.append(f"driver {versions.driver or 'unknown'}")
        facts.append(f"firmware {versions.firmware or 'unknown'}")
        facts.append(f"CANN {versions.cann}" if versions.cann else "CANN not installed")
        reason = "usable: " + ", ".join(facts)
        if not versions.cann:
            reason += " (NPU runtimes need the CANN toolkit; models run on the CPU until then)"
        if smi_problem:
            reason += f"; no live telemetry: {smi_problem}"
    else:
        reason = problem
    return Accelerator(
        id=f"ascend{index}",
        kind=DeviceKind.ASCEND,
        vendor="Huawei",
        name=name,
        memory_total_mib=memory,
        usable=problem is None,
        reason=reason,
        pci_address=pci.address,
        details={
            "pci_id": pci.pci_id,
            "pci_class": f"0x{pci.class_code:06x}",
            "kernel_driver": pci.driver,
            "numa_node": pci.numa_node,
            "chip": family,
            "chips": [
                {"npu_id": c.npu_id, "chip_id": c.chip_id, "name": c.name, "logical_id": lid}
                for c, lid in zip(chips, logical_ids, strict=False)
            ],
            "driver_version": versions.driver,
            "firmware_version": versions.firmware,
            "cann_version": versions.cann,
            "npu_smi": smi_problem or "ok",
        },
    )
