"""The runtime probe: what the installed llama.cpp and onnxruntime builds can use on this box.

May import records only (plus the standard library). The probe runs in a child interpreter:
loading llama.cpp initialises every compiled-in backend (a CUDA or CANN init can hang or abort
on a broken driver; accelerators.md 3), and the daemon should neither pay that at start nor
risk its life on it. The result is cached by the device manager.
"""

from __future__ import annotations

import json
import subprocess
import sys

from appliance.records import RuntimeReport

# Runs in the child. Prints one JSON object. Each part is guarded on its own so that a broken
# onnxruntime still leaves the llama.cpp answer, and the reverse.
_PROBE = r"""
import ctypes, ctypes.util, json, os
out = {"notes": []}
try:
    import llama_cpp
    out["llama_cpp_version"] = llama_cpp.__version__
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    files = os.listdir(lib_dir) if os.path.isdir(lib_dir) else []
    backends = ["CPU"]
    for name, tag in (("cuda", "CUDA"), ("cann", "CANN"), ("vulkan", "Vulkan"), ("hip", "ROCm")):
        if any(f.startswith("libggml-" + name) for f in files):
            backends.append(tag)
    devices = []
    try:
        from llama_cpp._ggml import libggml as g
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
        backends = sorted(set(backends) | set(registry), key=lambda b: (b != "CPU", b))
        devices = [g.ggml_backend_dev_name(g.ggml_backend_dev_get(i)).decode()
                   for i in range(g.ggml_backend_dev_count())]
    except Exception as error:
        out["notes"].append("ggml backend registry not readable (%s); backends from lib files"
                            % error)
    out["llama_cpp_backends"] = backends
    out["llama_cpp_devices"] = devices
    out["llama_cpp_gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
except Exception as error:
    out["notes"].append("llama-cpp-python cannot be loaded: %s" % error)
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


def probe_runtimes(timeout_s: float = 120.0, python: str | None = None) -> RuntimeReport:
    """Probe in a child interpreter; a crash or hang there becomes a note, not an exception."""
    try:
        result = subprocess.run(
            [python or sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return RuntimeReport(notes=[f"the runtime probe hung and was killed after {timeout_s} s"])
    except OSError as error:
        return RuntimeReport(notes=[f"the runtime probe could not start: {error}"])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return RuntimeReport(
            notes=[f"the runtime probe failed (exit status {result.returncode}): {tail}"]
        )
    return RuntimeReport.model_validate(json.loads(lines[-1]))
