"""`CUDA_VISIBLE_DEVICES` and `ASCEND_RT_VISIBLE_DEVICES`: which devices a runtime will see.

Imports only the standard library. The daemon's worker processes inherit its environment, so a
device the variable hides is one no model can use here, and its record must say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

CUDA_VAR = "CUDA_VISIBLE_DEVICES"
ASCEND_VAR = "ASCEND_RT_VISIBLE_DEVICES"


def ascend_hidden(env: Mapping[str, str], logical_id: int) -> str | None:
    """Why the NPU with this logical id is hidden, or None when it is visible.

    The variable lists logical ids, comma-separated; parsing stops at the first invalid entry
    (CANN env reference `envref_07_0028`), so `0,x,2` makes only 0 visible.
    """
    value = env.get(ASCEND_VAR)
    if value is None:
        return None
    listed: list[int] = []
    for entry in value.split(","):
        if not entry.strip().isdigit():
            break
        listed.append(int(entry))
    if logical_id in listed:
        return None
    return (
        f"hidden by {ASCEND_VAR}={value} (logical id {logical_id} is not listed); "
        f"add {logical_id} or unset the variable in the service environment"
    )


def cuda_hidden(env: Mapping[str, str], index: int, uuid: str | None) -> str | None:
    """Why the GPU with this NVML index (PCI order) and UUID is hidden, or None when visible.

    Entries are indexes or UUID prefixes (`GPU-3a1f`); CUDA stops at the first invalid one.
    Indexes are taken in PCI order, which is CUDA's order only with CUDA_DEVICE_ORDER=PCI_BUS_ID
    (its default puts the fastest GPU first); UUIDs are exact either way.
    """
    value = env.get(CUDA_VAR)
    if value is None:
        return None
    for entry in (part.strip() for part in value.split(",")):
        if re.fullmatch(r"\d+", entry):
            if int(entry) == index:
                return None
        elif entry.startswith(("GPU-", "MIG-")):
            if uuid and uuid.startswith(entry):
                return None
        else:
            break  # `-1`, an empty entry or garbage ends the list, as in CUDA
    return (
        f"hidden by {CUDA_VAR}={value!r} (index {index} / {uuid or 'UUID unknown'} is not "
        "listed); add it or unset the variable in the service environment"
    )
