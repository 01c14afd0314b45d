"""`appliance-hook-ascend-health` (boot): every Ascend chip's health word from `npu-smi info`.

Prints one line per chip; exits 1 when a chip reports anything but OK (Warning, Alarm,
Critical, UNKNOWN), naming the card and how to look closer. A box without `npu-smi` has no
Ascend driver to check: it says so and passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from appliance.drivers import npu_smi

TIMEOUT_S = float(os.environ.get("APPLIANCE_DEVICES__TOOL_TIMEOUT_S", "10"))


def main() -> int:
    tool = shutil.which("npu-smi")
    if tool is None:
        print("npu-smi not found: no Ascend driver installed, nothing to check")
        return 0
    try:
        result = subprocess.run([tool, "info"], capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"npu-smi info hung for {TIMEOUT_S:.0f} s: the driver is stuck; reboot or "
              "reinstall the Ascend driver", file=sys.stderr)  # fmt: skip
        return 1
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"npu-smi info failed (exit {result.returncode}): {last}", file=sys.stderr)
        return 1
    info = npu_smi.parse_info(result.stdout)
    if not info.chips:
        print("npu-smi info lists no NPU chips (unknown table layout or no card)", file=sys.stderr)
        return 1
    bad = []
    for chip in info.chips:
        line = f"NPU {chip.npu_id} chip {chip.chip_id} ({chip.name}, {chip.bus_id}): {chip.health}"
        print(line)
        if chip.health != "OK":
            bad.append(line)
    for line in bad:
        print(f"{line}; see `npu-smi info -t health -i <NPU>` for the alarm", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
