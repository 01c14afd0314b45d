"""packaging/runtime: the scripts that build llama.cpp for the box are lint-clean and refuse a
missing toolchain with a sentence naming what to install (the CANN toolkit cannot be reached
from these machines, so its recipe is checked this way)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "runtime" / "build-llama-runtime.sh"
SCRIPTS = [*sorted((ROOT / "packaging" / "runtime").glob("*.sh")),
           ROOT / "benchmarks" / "build-native-llama.sh"]  # fmt: skip


def build(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), "--version", "0.3.36", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, **env},
    )  # fmt: skip


def test_every_build_script_passes_shellcheck() -> None:
    assert shutil.which("shellcheck"), "shellcheck is a test dependency (make test-system-deps)"
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_cann_recipe_without_the_toolkit_says_to_source_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ASCEND_TOOLKIT_HOME"}
    result = subprocess.run(
        [str(BUILD), "--version", "0.3.36", "--runtime", "cann", "--configure-only"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "needs the CANN toolkit; source its set_env.sh first" in result.stderr


def test_an_unknown_runtime_is_refused_by_name() -> None:
    result = build("--runtime", "rocm", "--configure-only")
    assert result.returncode == 2
    assert "--runtime must be cpu, cuda or cann, not 'rocm'" in result.stderr


def test_the_cuda_recipe_configures_or_names_the_missing_toolkit_part() -> None:
    result = build("--runtime", "cuda", "--configure-only")
    if result.returncode == 0:  # a full CUDA toolkit: the CUDA backend is among the targets
        assert "ggml-cuda" in result.stdout.split()
        assert "ggml-cpu-x64" in result.stdout.split()  # every CPU variant rides along
    else:  # this machine kind has nvcc but not cuBLAS (seen 2026-12-01)
        assert result.returncode == 2, result.stderr
        assert "the CUDA build needs" in result.stderr
        assert ("nvcc" in result.stderr) or ("cuBLAS" in result.stderr)


def test_the_rpc_flag_adds_the_rpc_backend_and_its_server_to_the_build() -> None:
    """Configured only: building it is left to a box that needs RPC (docs/scale-out.md)."""
    result = build("--rpc", "--configure-only")
    assert result.returncode == 0, result.stderr
    targets = result.stdout.split()
    assert "ggml-rpc" in targets and "ggml-rpc-server" in targets
    plain = build("--configure-only")
    assert "ggml-rpc" not in plain.stdout.split(), "RPC stays out unless asked for"
