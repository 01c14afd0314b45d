"""The runtime probe: what the installed llama.cpp and onnxruntime builds can use on this box.

May import records, config and runtime (plus the standard library). First the CPU variant
self-test (`appliance.runtime`, cached), then one child interpreter that activates the build
with that variant and every accelerator backend it carries and reads ggml's registry. The child:
loading llama.cpp initialises every compiled-in backend (a CUDA or CANN init can hang or abort
on a broken driver; accelerators.md 3), and the daemon should neither pay that at start nor
risk its life on it. The result is cached by the device manager.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from appliance.config import Config
from appliance.records import RuntimeReport
from appliance.runtime import cpu_choice, installed_build
from appliance.runtime.builds import DEFAULT_ROOT
from appliance.runtime.probe import SelfTestAborted

# Runs in the child. Prints one JSON object. Each part is guarded on its own so that a broken
# onnxruntime still leaves the llama.cpp answer, and the reverse.
_PROBE = r"""
import ctypes, ctypes.util, json, os
out = {"notes": []}
lib_dir = os.environ.get("APPLIANCE_PROBE_LIB_DIR")
if lib_dir:
    try:
        from appliance.runtime.loader import activate
        cpu = [p for p in os.environ.get("APPLIANCE_PROBE_CPU", "").split(os.pathsep) if p]
        extra = [p for p in os.environ.get("APPLIANCE_PROBE_EXTRA", "").split(os.pathsep) if p]
        loaded, problems = activate(lib_dir, cpu, extra)
        out["notes"].extend(problems)
        import llama_cpp
        out["llama_cpp_version"] = llama_cpp.__version__
        g = ctypes.CDLL(os.path.join(lib_dir, "libggml.so"))
        g.ggml_backend_reg_count.restype = ctypes.c_size_t
        g.ggml_backend_reg_get.restype = ctypes.c_void_p
        g.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        g.ggml_backend_reg_name.restype = ctypes.c_char_p
        g.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        g.ggml_backend_dev_count.restype = ctypes.c_size_t
        g.ggml_backend_dev_get.restype = ctypes.c_void_p
        g.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        g.ggml_backend_dev_name.restype = ctypes.c_char_p
        g.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
        registry = [g.ggml_backend_reg_name(g.ggml_backend_reg_get(i)).decode()
                    for i in range(g.ggml_backend_reg_count())]
        out["llama_cpp_backends"] = sorted(set(registry), key=lambda b: (b != "CPU", b))
        out["llama_cpp_devices"] = [g.ggml_backend_dev_name(g.ggml_backend_dev_get(i)).decode()
                                    for i in range(g.ggml_backend_dev_count())]
        out["llama_cpp_gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as error:
        out["notes"].append("llama.cpp cannot be loaded from %s: %s" % (lib_dir, error))
try:
    import onnxruntime
    out["onnxruntime_version"] = onnxruntime.__version__
    providers = list(onnxruntime.get_available_providers())
    out["onnxruntime_providers"] = providers
    if "CANNExecutionProvider" in providers and not ctypes.util.find_library("ascendcl"):
        try:
            ctypes.CDLL("libascendcl.so")
        except OSError:
            out["notes"].append(
                "onnxruntime lists CANNExecutionProvider, but libascendcl.so (CANN) cannot be "
                "loaded: sessions would silently fall back to the CPU; install CANN and start "
                "the service with its set_env.sh environment")
    if "CUDAExecutionProvider" in providers:
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            out["notes"].append(
                "onnxruntime lists CUDAExecutionProvider, but libcuda.so.1 (the NVIDIA driver) "
                "cannot be loaded: sessions would fall back to the CPU")
except Exception as error:
    out["notes"].append("onnxruntime cannot be loaded: %s" % error)
print(json.dumps(out))
"""


def probe_runtimes(
    config: Config | None = None, timeout_s: float = 120.0, python: str | None = None
) -> RuntimeReport:
    """Self-test the CPU variants (cached), then probe in a child interpreter.

    A crash or hang anywhere becomes a note, not an exception: the daemon keeps its inventory.
    """
    config = config or Config()
    build = installed_build(config)
    env = dict(os.environ)
    base: dict[str, object] = {}
    if build is None:
        notes = [
            f"no llama.cpp runtime is installed in {config.runtime.llama_dir or DEFAULT_ROOT}: "
            "GGUF models cannot run; run `make setup` or reinstall the package"
        ]
    else:
        try:
            choice = cpu_choice(config, build)
        except SelfTestAborted:
            return RuntimeReport(notes=["the CPU variant self-test was stopped (shutting down)"])
        notes = [] if choice.variant else [choice.reason]
        base = {
            "llama_cpp_runtime": build.kind,
            "llama_cpp_dir": str(build.path),
            "llama_cpp_accelerator_libs": [str(p) for p in build.accelerator_libs],
            "cpu_variant": choice,
        }
        if choice.variant:
            env["APPLIANCE_PROBE_LIB_DIR"] = str(build.path)
            env["APPLIANCE_PROBE_CPU"] = choice.path
            env["APPLIANCE_PROBE_EXTRA"] = os.pathsep.join(str(p) for p in build.accelerator_libs)
    child = _run_child(env, timeout_s, python)
    child["notes"] = [*notes, *child.get("notes", [])]  # type: ignore[misc]
    return RuntimeReport.model_validate({**child, **base})


def _run_child(env: dict[str, str], timeout_s: float, python: str | None) -> dict[str, object]:
    try:
        result = subprocess.run(
            [python or sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"notes": [f"the runtime probe hung and was killed after {timeout_s} s"]}
    except OSError as error:
        return {"notes": [f"the runtime probe could not start: {error}"]}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"notes": [f"the runtime probe failed (exit status {result.returncode}): {tail}"]}
    return dict(json.loads(lines[-1]))
