"""Reading NVIDIA GPUs through NVML (`pynvml` from the `nvidia-ml-py` package).

Imports only the standard library; the binding is passed in (or imported lazily by `load_nvml`)
so that tests can hand over a fake module that records calls, as GPUStack's tests do. Each
metric is read on its own: data-centre GPUs answer NotSupported for fans, some GeForce parts for
power (accelerators.md 2.3), and one missing metric must not lose the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass
class NvmlGpu:
    """Inventory of one GPU as NVML reports it."""

    index: int
    bus_id: str
    """Normalised like sysfs: `0000:1b:00.0`."""
    name: str
    uuid: str
    memory_total_mib: int
    compute_capability: str | None = None
    minor_number: int | None = None
    power_limit_w: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class NvmlInventory:
    driver_version: str | None
    cuda_driver_version: str | None
    """`12.4` from NVML's 12040."""
    gpus: list[NvmlGpu]


def load_nvml() -> tuple[Any, str]:
    """(initialised pynvml module, "") or (None, why NVML cannot be used)."""
    try:
        import pynvml
    except ImportError:
        return None, "the nvidia-ml-py package is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, version mismatch
        return None, f"NVML could not start: {error}"
    return pynvml, ""


def normalise_bus_id(bus_id: str | bytes) -> str:
    """NVML and nvidia-smi write `00000000:1B:00.0`; sysfs writes `0000:1b:00.0`."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    domain, _, rest = text.strip().lower().rpartition(":")
    domain, _, bus = domain.rpartition(":") if domain.count(":") else ("", "", domain)
    return f"{int(domain or '0', 16):04x}:{bus}:{rest}" if bus else text.strip().lower()


def cuda_version(value: int) -> str:
    return f"{value // 1000}.{(value % 1000) // 10}"


def read_inventory(nvml: Any) -> NvmlInventory:
    """Every GPU NVML sees. Raises only when the device count itself cannot be read."""
    driver = _try(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
    cuda = _try(lambda: cuda_version(nvml.nvmlSystemGetCudaDriverVersion()))
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = _try(lambda handle=handle: nvml.nvmlDeviceGetMemoryInfo(handle))
        capability = _try(lambda handle=handle: nvml.nvmlDeviceGetCudaComputeCapability(handle))
        limit = _try(lambda handle=handle: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        gpus.append(
            NvmlGpu(
                index=index,
                bus_id=normalise_bus_id(nvml.nvmlDeviceGetPciInfo(handle).busId),
                name=_text(nvml.nvmlDeviceGetName(handle)),
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                memory_total_mib=memory.total // MIB if memory else 0,
                compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
                minor_number=_try(lambda handle=handle: nvml.nvmlDeviceGetMinorNumber(handle)),
                power_limit_w=limit / 1000 if limit is not None else None,
            )
        )
    return NvmlInventory(driver_version=driver, cuda_driver_version=cuda, gpus=gpus)


def read_sample(nvml: Any, uuid: str) -> dict[str, Any]:
    """Telemetry fields for one GPU (keys as in `Telemetry`); absent metrics stay None.

    Raises when the GPU itself is gone (handle lookup fails): that is a lost device, not a
    missing metric (accelerators.md 2.7: a working NVML that starts failing means trouble).
    """
    handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
    memory = _try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    rates = _try(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    temperature = _try(lambda: nvml.nvmlDeviceGetTemperature(handle, 0))  # NVML_TEMPERATURE_GPU
    power = _try(lambda: nvml.nvmlDeviceGetPowerUsage(handle))  # milliwatts
    limit = _try(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    ecc = _try(lambda: nvml.nvmlDeviceGetTotalEccErrors(handle, 1, 1))  # uncorrected, volatile
    return {
        "timestamp": time.time(),
        "utilization_pct": float(rates.gpu) if rates else None,
        "memory_used_mib": memory.used // MIB if memory else None,
        "memory_total_mib": memory.total // MIB if memory else None,
        "temperature_c": float(temperature) if temperature is not None else None,
        "power_w": power / 1000 if power is not None else None,
        "power_limit_w": limit / 1000 if limit is not None else None,
        "health": None if not ecc else f"{ecc} uncorrected ECC errors",
    }


def _try(call: Any) -> Any:
    try:
        return call()
    except Exception as error:  # NVMLError_NotSupported and friends: one metric, not the GPU
        log.debug("NVML metric unavailable: %s", error)
        return None


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returns str on Python 3; older wrappers returned bytes.
    return value.decode() if isinstance(value, bytes) else value
