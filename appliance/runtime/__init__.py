"""The llama.cpp runtime: which build is installed, which CPU variant really runs here, loading it.

May import records, config, errors and the standard library (numpy and gguf in the self-test);
never the API, engine, store or UI. The engine worker imports only `runtime.loader`, which is
standard-library only. Everything that loads llama.cpp goes through the one choice made here:
the workers (the placement hands them the build and variant), the runtime probe, and in-process
users such as the tests and benchmarks (`activate_in_process`).

    builds.py          installed builds (folders with build-info.json) and their variants
    probe.py           the CPU variant self-test and its cached verdict
    selftest.py        the self-test's child process (one variant per process)
    selftest_model.py  the random-weight model it decodes
    loader.py          LLAMA_CPP_LIB_PATH + registering exactly the chosen backends
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.errors import EngineError
from appliance.runtime.builds import DEFAULT_ROOT, RuntimeBuild, find_builds
from appliance.runtime.loader import activate

if TYPE_CHECKING:
    # Not at run time: an engine worker imports `runtime.loader`, which runs this file first,
    # and config (pydantic) and the self-test (numpy) would add ~35 MiB to every worker.
    from appliance.config import Config
    from appliance.records import CpuRuntimeChoice

__all__ = ["RuntimeMissing", "activate_in_process", "cpu_choice", "installed_build"]


class RuntimeMissing(EngineError):
    """No llama.cpp runtime build is installed, or no CPU variant of it runs here."""

    code = "runtime_missing"
    http_status = 503
    title = "llama.cpp runtime unavailable"


def installed_build(config: Config) -> RuntimeBuild | None:
    """The preferred installed build (an accelerator build before the CPU one), if any."""
    builds = find_builds(config.runtime.llama_dir or DEFAULT_ROOT)
    return builds[0] if builds else None


def cpu_choice(config: Config, build: RuntimeBuild) -> CpuRuntimeChoice:
    """The self-tested CPU variant of `build` (cached; the first call on a machine tests)."""
    from appliance.runtime.probe import choose_cpu_variant

    return choose_cpu_variant(
        build,
        config.cache_dir,
        candidates=config.runtime.cpu_variants,
        threads=config.engine.threads,
        timeout_s=config.runtime.selftest_timeout_s,
    )


def activate_in_process(config: Config) -> CpuRuntimeChoice:
    """Load llama.cpp into this process with the chosen CPU variant; then `import llama_cpp`."""
    build = installed_build(config)
    if build is None:
        raise RuntimeMissing(
            f"no llama.cpp runtime is installed in {config.runtime.llama_dir or DEFAULT_ROOT}; "
            "run `make setup` (or reinstall the package), or set runtime.llama_dir"
        )
    choice = cpu_choice(config, build)
    if not choice.variant:
        raise RuntimeMissing(choice.reason)
    activate(str(build.path), [choice.path])
    return choice
