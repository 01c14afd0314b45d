"""NVIDIA GPUs: PCI gate, then NVML, then `nvidia-smi`, then PCI only with a reason.

May import only `appliance.records` and sibling helpers, never another vendor module.
Details keys: `pci_id`, `pci_class`, `kernel_driver`, `numa_node`, `source` (`nvml`,
`nvidia-smi` or `pci`), `uuid`, `index` (NVML order), `driver_version`, `cuda_driver_version`,
`compute_capability`, `minor_number`, `power_limit_w`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.records import Accelerator, DeviceKind, Telemetry

from . import nvidia_smi, nvml
from .base import Driver
from .pci import CLASS_DISPLAY, VENDOR_NVIDIA, PciDevice, scan_pci
from .visible import cuda_hidden

# Product names for PCI-only records (no NVML, no nvidia-smi), from the lspci captures quoted
# in accelerators.md 2.1; other ids print as the exact PCI id.
KNOWN_IDS = {
    0x2330: "NVIDIA H100 SXM5 80GB",
    0x2331: "NVIDIA H100 PCIe",
    0x2335: "NVIDIA H200 SXM 141GB",
}
_SMI_CACHE_S = 0.5  # one nvidia-smi run serves every GPU's sample in the same cycle


def is_nvidia_gpu(device: PciDevice) -> bool:
    """A GPU function of an NVIDIA card, as opposed to its HDMI audio (class 0x0403) or an
    NVSwitch bridge (0x0680), which share the vendor id.

    SR-IOV virtual functions are left out so that one card counts once on a host; a VF passed
    into a VM has no `physfn` link there and is seen as the GPU it is.
    """
    return (
        device.vendor_id == VENDOR_NVIDIA
        and device.base_class == CLASS_DISPLAY
        and not device.is_virtual_function
    )


class NvidiaDriver(Driver):
    """NVIDIA GPUs found on PCI, described by NVML (or nvidia-smi when NVML cannot load)."""

    name = "nvidia"

    def __init__(
        self,
        sys_root: str | Path | None = None,
        *,
        nvml_module: Any = None,
        tool_timeout_s: float = 10.0,
        proc_root: str | Path = "/proc",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._sys_root = sys_root
        self._nvml = nvml_module
        self._nvml_problem = ""
        self._timeout = tool_timeout_s
        self._proc = Path(proc_root)
        self._env = env
        self._smi: tuple[float, list[nvidia_smi.SmiGpu], str] = (0.0, [], "")

    def discover(self) -> list[Accelerator]:
        gpus = [device for device in scan_pci(self._sys_root) if is_nvidia_gpu(device)]
        if not gpus:
            return []  # the cheap gate: no NVIDIA function, no library is loaded
        env = os.environ if self._env is None else self._env
        inventory, problem = self._nvml_inventory()
        if inventory is not None:
            by_bus = {gpu.bus_id: gpu for gpu in inventory.gpus}
            return [
                _from_nvml(i, pci, by_bus.get(pci.address), inventory, env)
                for i, pci in enumerate(gpus)
            ]
        smi_gpus, smi_problem = self._smi_query(fresh=True)
        if smi_gpus:
            by_bus_smi = {gpu.bus_id: gpu for gpu in smi_gpus}
            return [
                _from_smi(i, pci, by_bus_smi.get(pci.address), problem, env)
                for i, pci in enumerate(gpus)
            ]
        kernel = kernel_module_version(self._proc)
        return [
            _pci_only(i, pci, f"{problem}; {smi_problem}", kernel) for i, pci in enumerate(gpus)
        ]

    def telemetry(self, device: Accelerator) -> Telemetry:
        uuid = str(device.details.get("uuid") or "")
        source = device.details.get("source")
        try:
            if source == "nvml" and self._nvml is not None and uuid:
                return Telemetry(device_id=device.id, **nvml.read_sample(self._nvml, uuid))
            if source == "nvidia-smi":
                return self._smi_sample(device)
        except Exception as error:  # the GPU fell off the bus, or NVML broke under us
            return _unavailable(device, f"NVML could not read the GPU: {error}")
        return _unavailable(device, device.reason)

    def _nvml_inventory(self) -> tuple[nvml.NvmlInventory | None, str]:
        if self._nvml is None:
            self._nvml, self._nvml_problem = nvml.load_nvml()
        if self._nvml is None:
            return None, self._nvml_problem
        try:
            return nvml.read_inventory(self._nvml), ""
        except Exception as error:
            return None, f"NVML could not list the GPUs: {error}"

    def _smi_query(self, fresh: bool = False) -> tuple[list[nvidia_smi.SmiGpu], str]:
        taken, gpus, problem = self._smi
        if fresh or time.monotonic() - taken > _SMI_CACHE_S:
            gpus, problem = nvidia_smi.query(self._timeout)
            self._smi = (time.monotonic(), gpus, problem)
        return gpus, problem

    def _smi_sample(self, device: Accelerator) -> Telemetry:
        gpus, problem = self._smi_query()
        match = next((gpu for gpu in gpus if gpu.bus_id == device.pci_address), None)
        if match is None:
            return _unavailable(device, problem or "nvidia-smi no longer lists this GPU")
        return Telemetry(
            device_id=device.id,
            timestamp=time.time(),
            utilization_pct=match.utilization_pct,
            memory_used_mib=match.memory_used_mib,
            memory_total_mib=match.memory_total_mib,
            temperature_c=match.temperature_c,
            power_w=match.power_w,
            power_limit_w=match.power_limit_w,
        )


def kernel_module_version(proc_root: Path) -> str | None:
    """Version of the loaded kernel module from `/proc/driver/nvidia/version` (both the
    proprietary and the open module's wording; accelerators.md 2.2), None when not loaded."""
    try:
        text = (proc_root / "driver" / "nvidia" / "version").read_text()
    except OSError:
        return None
    match = re.search(r"Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return match.group(1) if match else None


def _base(index: int, pci: PciDevice) -> dict[str, object]:
    return {
        "pci_id": pci.pci_id,
        "pci_class": f"0x{pci.class_code:06x}",
        "kernel_driver": pci.driver,
        "numa_node": pci.numa_node,
    }


def _from_nvml(
    index: int,
    pci: PciDevice,
    gpu: nvml.NvmlGpu | None,
    inventory: nvml.NvmlInventory,
    env: Mapping[str, str],
) -> Accelerator:
    if gpu is None:
        return _pci_only(
            index, pci, "NVML works but does not list this GPU (fallen off the bus?)", None
        )
    hidden = cuda_hidden(env, gpu.index, gpu.uuid)
    versions = f"driver {inventory.driver_version}, CUDA {inventory.cuda_driver_version}"
    summary = f"{gpu.memory_total_mib / 1024:.0f} GiB, {versions}, compute {gpu.compute_capability}"
    return Accelerator(
        id=f"nvidia{index}",
        kind=DeviceKind.NVIDIA,
        vendor="NVIDIA",
        name=gpu.name,
        memory_total_mib=gpu.memory_total_mib,
        usable=hidden is None,
        reason=hidden or f"usable: {summary}",
        pci_address=pci.address,
        details={
            **_base(index, pci),
            "source": "nvml",
            "uuid": gpu.uuid,
            "index": gpu.index,
            "driver_version": inventory.driver_version,
            "cuda_driver_version": inventory.cuda_driver_version,
            "compute_capability": gpu.compute_capability,
            "minor_number": gpu.minor_number,
            "power_limit_w": gpu.power_limit_w,
        },
    )


def _from_smi(
    index: int,
    pci: PciDevice,
    gpu: nvidia_smi.SmiGpu | None,
    nvml_problem: str,
    env: Mapping[str, str],
) -> Accelerator:
    if gpu is None:
        return _pci_only(index, pci, "nvidia-smi works but does not list this GPU", None)
    hidden = cuda_hidden(env, gpu.index, gpu.uuid)
    memory = gpu.memory_total_mib or 0
    reason = (
        f"usable: {memory / 1024:.0f} GiB, driver {gpu.driver_version} (read with nvidia-smi, "
        f"because {nvml_problem}; telemetry is coarser)"
    )
    return Accelerator(
        id=f"nvidia{index}",
        kind=DeviceKind.NVIDIA,
        vendor="NVIDIA",
        name=gpu.name,
        memory_total_mib=memory,
        usable=hidden is None,
        reason=hidden or reason,
        pci_address=pci.address,
        details={
            **_base(index, pci),
            "source": "nvidia-smi",
            "uuid": gpu.uuid,
            "index": gpu.index,
            "driver_version": gpu.driver_version,
            "power_limit_w": gpu.power_limit_w,
        },
    )


def _pci_only(index: int, pci: PciDevice, problem: str, kernel: str | None) -> Accelerator:
    return Accelerator(
        id=f"nvidia{index}",
        kind=DeviceKind.NVIDIA,
        vendor="NVIDIA",
        name=KNOWN_IDS.get(pci.device_id, f"NVIDIA GPU [{pci.pci_id}]"),
        usable=False,
        reason=_why_not(pci, problem, kernel),
        pci_address=pci.address,
        details={**_base(index, pci), "source": "pci", "kernel_module_version": kernel},
    )


def _why_not(pci: PciDevice, problem: str, kernel: str | None) -> str:
    where = f"on PCI {pci.address}"
    if pci.driver is None:
        return (
            f"no kernel driver is bound to the GPU {where}: install the NVIDIA driver "
            "(e.g. `apt install nvidia-driver` or the .run installer) and reboot"
        )
    if pci.driver == "nouveau":
        return (
            f"the GPU {where} is driven by nouveau, which cannot run CUDA: install the NVIDIA "
            "driver, blacklist nouveau and reboot"
        )
    if pci.driver.startswith("vfio"):
        return f"the GPU {where} is bound to {pci.driver} (passed to a VM); unbind it to use it"
    loaded = f"kernel module {kernel}" if kernel else f"kernel driver {pci.driver}"
    return (
        f"{loaded} is bound to the GPU {where}, but neither NVML nor nvidia-smi works ({problem}); "
        "run `nvidia-smi` by hand: a 'Driver/library version mismatch' needs a reboot, a "
        "missing libnvidia-ml.so.1 needs the driver's utility package"
    )


def _unavailable(device: Accelerator, why: str) -> Telemetry:
    return Telemetry(device_id=device.id, timestamp=time.time(), available=False, error=why)
