"""What llama.cpp really allocates for a model: the buffer sizes it logs while loading.

Test and benchmark helper; imports llama_cpp only in the child process. `measure(path, n_ctx)`
runs `python -m helpers.llama_memory PATH N_CTX` in a subprocess (llama.cpp's log callback is
process-global, so capturing it must not disturb other tests), which loads the model with
llama-cpp-python's defaults (n_ubatch 512, flash attention off, one sequence) and prints the
`model buffer size`, `KV buffer size`, `compute buffer size` and `output buffer size` lines
(MiB, two decimals) summed per kind, as JSON in bytes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

MIB = 1024**2
_LINE = re.compile(r"(model|KV|compute|output) buffer size\s*=\s*([0-9.]+) MiB")


def measure(path: Path, n_ctx: int) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-m", "helpers.llama_memory", str(path), str(n_ctx)],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _main(path: str, n_ctx: int) -> None:
    import ctypes

    from appliance.config import Config
    from appliance.runtime import activate_in_process

    activate_in_process(Config())  # the daemon's self-tested CPU variant
    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(_level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        lines.append(text.decode(errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p())
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, verbose=True, seed=0)
    sizes = {"model": 0.0, "KV": 0.0, "compute": 0.0, "output": 0.0}
    for match in _LINE.finditer("".join(lines)):
        sizes[match.group(1)] += float(match.group(2))
    result = {
        "weights": int(sizes["model"] * MIB), "kv": int(sizes["KV"] * MIB),
        "compute": int(sizes["compute"] * MIB), "output": int(sizes["output"] * MIB),
        "n_ctx": llm.n_ctx(),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]))
