"""The llama.cpp runtime as the tests use it: the same self-tested choice the daemon makes.

Test helper. Every test that loads llama.cpp goes through `appliance.runtime` (the issue's rule:
"everything that loads llama.cpp goes through that choice"). The CPU variant verdict is kept in
one cache folder for the whole test session (`RUNTIME_CACHE`, exported as
`APPLIANCE_RUNTIME__CACHE_DIR` by the root conftest), so the self-test runs once per session,
not once per daemon.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.devices.runtimes import probe_runtimes
from appliance.engine.messages import Load
from appliance.placement import place_model
from appliance.records import Accelerator, DeviceKind, ModelInfo, ModelPlacement, RuntimeReport

RUNTIME_CACHE = Path(__file__).resolve().parents[2] / ".pytest_cache" / "appliance-runtime"


@functools.cache
def runtime_report() -> RuntimeReport:
    """What the daemon's runtime probe reports on this machine (probed once per session)."""
    return probe_runtimes(Config())


def load_message(model_path: Path | str, context_length: int, threads: int, **extra: Any) -> Load:
    """A worker `Load` on the self-tested CPU variant, as the placement would send it."""
    report = runtime_report()
    assert report.llama_cpp_dir and report.cpu_variant and report.cpu_variant.variant, report
    return Load(
        str(model_path), context_length, threads,
        runtime_dir=report.llama_cpp_dir, backend_libs=[report.cpu_variant.path], **extra,
    )  # fmt: skip


def cpu_placer(config: Config):  # type: ignore[no-untyped-def]
    """An engine manager placer for a CPU-only box with this machine's RAM and runtime."""
    import psutil

    cpu = Accelerator(
        id="cpu0", kind=DeviceKind.CPU, vendor="test", name="this machine's CPU",
        memory_total_mib=psutil.virtual_memory().total // 2**20,
    )  # fmt: skip

    async def place(info: ModelInfo) -> ModelPlacement:
        return place_model(info, [cpu], runtime_report(), config)

    return place


TRAP_VARIANT = "trap"
"""A variant library whose backend init executes an illegal instruction (`__builtin_trap`, ud2 on
x86_64): what a variant compiled for instructions this CPU cannot run does on its first kernel."""


def runtime_with_a_variant_this_cpu_cannot_run(root: Path) -> tuple[Path, str]:
    """(runtime root, variant name): the installed CPU build, plus a variant that dies here.

    A real variant whose instructions this CPU lacks when there is one: CPUID says so (score 0)
    or the session's self-test saw it die (sapphirerapids on an AMX Xeon VM whose AMX faults).
    On a CPU that runs every variant ggml has, a library that traps in its init stands in.
    """
    import shutil
    import subprocess

    report = runtime_report()
    assert report.llama_cpp_dir and report.cpu_variant
    build = Path(report.llama_cpp_dir)
    copy = root / "cpu"
    copy.mkdir(parents=True)
    for item in build.iterdir():
        if item.name != "build-info.json":  # a copy, so that a test may edit it
            (copy / item.name).symlink_to(item)
    shutil.copy(build / "build-info.json", copy / "build-info.json")
    verdicts = report.cpu_variant.verdicts
    lacking = [v.name for v in verdicts if v.score == 0] or [
        v.name for v in verdicts if v.status == "rejected"
    ]
    if lacking:
        return root, lacking[0]
    source = root / "trap.c"
    source.write_text(
        "int ggml_backend_score(void) { return 1; }\n"
        "void *ggml_backend_init(void) { __builtin_trap(); return 0; }\n"
    )
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(copy / f"libggml-cpu-{TRAP_VARIANT}.so"), str(source)],
        check=True,
    )
    return root, TRAP_VARIANT
