"""`appliance-hook-nvidia-persistence` (boot): reports each NVIDIA GPU's persistence mode.

Without persistence the driver tears the GPU down whenever no process holds it, so every model
load pays the initialisation again (seconds per GPU) and telemetry can wake idle GPUs. This hook
only reports: enabling it is root's job (`systemctl enable --now nvidia-persistenced`). Exits 0
always unless `nvidia-smi` fails, since a disabled mode costs time, not correctness.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

TIMEOUT_S = float(os.environ.get("APPLIANCE_DEVICES__TOOL_TIMEOUT_S", "10"))
QUERY = "--query-gpu=index,pci.bus_id,persistence_mode"


def main() -> int:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        print("nvidia-smi not found: no NVIDIA driver installed, nothing to report")
        return 0
    try:
        result = subprocess.run(
            [tool, QUERY, "--format=csv,noheader"], capture_output=True, text=True,
            timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        print(f"nvidia-smi hung for {TIMEOUT_S:.0f} s", file=sys.stderr)
        return 1
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines()
                or ["no output"])[-1]  # fmt: skip
        print(f"nvidia-smi failed (exit {result.returncode}): {last}", file=sys.stderr)
        return 1
    disabled = []
    for row in result.stdout.strip().splitlines():
        index, bus_id, mode = (cell.strip() for cell in row.split(",", 2))
        print(f"GPU {index} ({bus_id}): persistence mode {mode}")
        if mode.lower() != "enabled":
            disabled.append(index)
    if disabled:
        print(
            f"persistence mode is off on GPU {', '.join(disabled)}: each model load pays the "
            "driver's initialisation again; enable it as root with "
            "`systemctl enable --now nvidia-persistenced`"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
