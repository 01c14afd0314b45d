"""Which llama.cpp runtime builds are installed: folders of libraries with a build-info.json.

May import the standard library only. `packaging/runtime/build-llama-runtime.sh` writes one
folder per build (`cpu`, `cuda`, `cann`) under the runtime root; each holds libllama, libggml,
every CPU variant (`libggml-cpu-<name>.so`) and, for accelerator builds, their backend library.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path(sys.prefix) / "lib" / "ai-appliance" / "llama-runtime"
"""Where `make setup` and the packages install the builds (inside the appliance's venv)."""

PREFERENCE = ("cuda", "cann", "cpu")
"""With several builds installed, an accelerator build first: it carries every CPU variant too."""

ACCELERATOR_LIBS = {"cuda": "libggml-cuda.so", "cann": "libggml-cann.so"}

# What each x86_64 variant adds, from ggml/src/CMakeLists.txt (GGML_CPU_ALL_VARIANTS), so that a
# verdict can say which instructions a rejected variant needed.
X86_FEATURES = {
    "x64": "",
    "sse42": "SSE4.2",
    "sandybridge": "AVX",
    "ivybridge": "AVX F16C",
    "piledriver": "AVX F16C FMA",
    "haswell": "AVX2 FMA F16C BMI2",
    "skylakex": "AVX-512",
    "cannonlake": "AVX-512 VBMI",
    "cascadelake": "AVX-512 VNNI",
    "icelake": "AVX-512 VBMI VNNI",
    "cooperlake": "AVX-512 VNNI BF16",
    "zen4": "AVX-512 VBMI VNNI BF16",
    "alderlake": "AVX2 AVX-VNNI",
    "sapphirerapids": "AVX-512 VNNI BF16 + AMX tiles (AMX-INT8)",
}
REFERENCE_VARIANT = {"x86_64": "x64", "aarch64": "armv8.0_1"}
"""The plainest variant: its numbers are the reference every other variant must match."""


@dataclass(frozen=True)
class RuntimeBuild:
    kind: str
    """`cpu`, `cuda` or `cann` (the folder's name)."""
    path: Path
    info: dict[str, object] = field(hash=False, compare=False)
    """The build's build-info.json: version, flags, source checksum."""

    @property
    def cpu_variants(self) -> dict[str, Path]:
        return {
            lib.name.removeprefix("libggml-cpu-").removesuffix(".so"): lib
            for lib in sorted(self.path.glob("libggml-cpu-*.so"))
        }

    @property
    def accelerator_libs(self) -> list[Path]:
        return [
            self.path / name for name in ACCELERATOR_LIBS.values() if (self.path / name).exists()
        ]

    @property
    def describe(self) -> str:
        version = self.info.get("llama_cpp_python", "?")
        return f"{self.kind} build of llama.cpp (llama-cpp-python {version}) in {self.path}"


def find_builds(root: Path = DEFAULT_ROOT) -> list[RuntimeBuild]:
    """Every complete build under `root`, in order of preference."""
    builds = []
    for kind in PREFERENCE:
        folder = root / kind
        info_file = folder / "build-info.json"
        if not info_file.is_file() or not (folder / "libllama.so").exists():
            continue
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            continue
        builds.append(RuntimeBuild(kind, folder, info))
    return builds
