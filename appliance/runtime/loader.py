"""Loading llama.cpp's libraries from one runtime build, with the backends we chose, not ggml.

Standard library only: the engine worker imports this before `llama_cpp`, and nothing heavy may
come with it. llama-cpp-python is installed as bindings only and finds its libraries through
`LLAMA_CPP_LIB_PATH`; the build is made with GGML_BACKEND_DL, so libllama has no compute backend
until one is registered. ggml's own `ggml_backend_load_best` picks a CPU variant by CPUID score
alone, and on some machines (an Intel Xeon VM with AMX, 2026-12-01) the top-scored variant dies
with SIGILL on its first decode. So we register exactly the backend files that the runtime probe
tested and the placement names: dlopen, `ggml_backend_init`, `ggml_backend_register`. That also
lets the self-test force a variant whose CPUID score is 0 (ggml's loader would refuse it).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["LoadedBackend", "RuntimeLoadError", "activate", "add_rpc_servers", "backend_score"]

_GGML_BACKEND_API_VERSION = 2
"""`GGML_BACKEND_API_VERSION` of the ggml these bindings were written for (ggml-backend-impl.h)."""

_activated: tuple[str, tuple[str, ...]] | None = None
_keep: list[ctypes.CDLL] = []  # dlopened backends must outlive every model


class RuntimeLoadError(Exception):
    """A runtime build or backend library could not be loaded (the message says which and why)."""


class LoadedBackend:
    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name


def _ggml(lib_dir: str) -> ctypes.CDLL:
    path = Path(lib_dir) / "libggml.so"
    if not path.exists():
        raise RuntimeLoadError(
            f"no llama.cpp runtime in {lib_dir} (libggml.so is missing); reinstall the runtime "
            "(make setup, or the ai-appliance package) or set runtime.llama_dir"
        )
    try:
        # RTLD_GLOBAL and the same path libllama's RUNPATH resolves to: one ggml registry.
        ggml = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        raise RuntimeLoadError(f"cannot load {path}: {error}") from None
    ggml.ggml_backend_register.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_register.restype = None
    ggml.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_reg_name.restype = ctypes.c_char_p
    return ggml


def backend_score(path: str) -> int:
    """ggml's CPUID-based score of a backend library (0: its CPU features are missing).

    Only the variant's feature-detection code runs (built apart from its kernels), so this is
    safe to call for any variant; it says what CPUID promises, not what really runs.
    """
    try:
        library = ctypes.CDLL(path)
    except OSError as error:
        raise RuntimeLoadError(f"cannot load {path}: {error}") from None
    try:
        score = library.ggml_backend_score
    except AttributeError:
        return 1  # accelerator backends have no score: always candidates
    score.restype = ctypes.c_int
    return int(score())


def activate(
    lib_dir: str, backends: list[str], optional: list[str] | None = None
) -> tuple[list[LoadedBackend], list[str]]:
    """Point llama-cpp-python at `lib_dir` and register `backends` (library paths), in order.

    `optional` backends (an accelerator's library, which needs its driver) are registered when
    they load; each one that does not adds a sentence to the returned problems. Must run before
    `import llama_cpp`. Calling it again with the same arguments is a no-op; with different ones
    it is an error (a process holds one ggml registry).
    """
    global _activated
    key = (str(lib_dir), tuple(str(b) for b in [*backends, *(optional or [])]))
    if _activated is not None:
        if _activated != key:
            raise RuntimeLoadError(
                f"llama.cpp is already active from {_activated[0]} with {list(_activated[1])}; "
                "one process can use one runtime"
            )
        return [], []
    os.environ["LLAMA_CPP_LIB_PATH"] = str(lib_dir)
    ggml = _ggml(str(lib_dir))
    loaded = [_register(ggml, str(path)) for path in backends]
    problems = []
    for path in optional or []:
        try:
            loaded.append(_register(ggml, str(path)))
        except RuntimeLoadError as error:
            problems.append(str(error))
    _activated = key
    return loaded, problems


def _register(ggml: ctypes.CDLL, path: str) -> LoadedBackend:
    try:
        library = ctypes.CDLL(path)
    except OSError as error:
        raise RuntimeLoadError(f"cannot load the backend {path}: {error}") from None
    init = library.ggml_backend_init
    init.restype = ctypes.c_void_p
    registration = init()
    if not registration:
        raise RuntimeLoadError(f"the backend {path} did not initialise (no device or driver?)")
    version = ctypes.cast(registration, ctypes.POINTER(ctypes.c_int))[0]
    if version != _GGML_BACKEND_API_VERSION:
        raise RuntimeLoadError(
            f"the backend {path} has ggml backend API {version}, the runtime expects "
            f"{_GGML_BACKEND_API_VERSION}: it belongs to another llama.cpp build"
        )
    ggml.ggml_backend_register(registration)
    _keep.append(library)
    name = (ggml.ggml_backend_reg_name(registration) or b"?").decode()
    return LoadedBackend(path, name)


RPC_LIBRARY = "libggml-rpc.so"
"""The RPC backend of a runtime built with GGML_RPC (`build-llama-runtime.sh --rpc`)."""


def add_rpc_servers(endpoints: list[str]) -> list[str]:
    """Add each `host:port` llama.cpp RPC server as a device, after `activate` registered the
    runtime's RPC backend (the placement puts `libggml-rpc.so` in the backend list).

    llama.cpp then spreads the offloaded layers over these devices by their free memory, as
    `llama-server --rpc` does. Returns the device names; RuntimeLoadError names the server that
    could not be added. Untested against a real RPC server here: the runtime the tests use is
    built without GGML_RPC (docs/scale-out.md).
    """
    if _activated is None:
        raise RuntimeLoadError("add_rpc_servers needs an active runtime (call activate first)")
    lib_dir = _activated[0]
    ggml = _ggml(lib_dir)
    ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    registration = ggml.ggml_backend_reg_by_name(b"RPC")
    if not registration:
        raise RuntimeLoadError(
            f"the llama.cpp runtime in {lib_dir} has no RPC backend ({RPC_LIBRARY} was not "
            "registered): it was built without GGML_RPC; build it with "
            "`build-llama-runtime.sh --rpc` or clear rpc.peers"
        )
    find = ggml.ggml_backend_reg_get_proc_address
    names = []
    # Newer ggml: add_server(endpoint) -> a registry of the server's devices; older:
    # add_device(endpoint) -> one device. Either way the result is registered globally, where
    # llama.cpp's model loader finds it (RPC devices go first in its device list).
    add_server = find(registration, b"ggml_backend_rpc_add_server")
    add_device = find(registration, b"ggml_backend_rpc_add_device")
    for endpoint in endpoints:
        if add_server:
            function = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(add_server)
            server = function(endpoint.encode())
            if server:
                ggml.ggml_backend_register(server)
        elif add_device:
            function = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(add_device)
            server = function(endpoint.encode())
            if server:
                ggml.ggml_backend_device_register.argtypes = [ctypes.c_void_p]
                ggml.ggml_backend_device_register.restype = None
                ggml.ggml_backend_device_register(server)
        else:
            raise RuntimeLoadError("this ggml's RPC backend offers no way to add a server")
        if not server:
            raise RuntimeLoadError(
                f"cannot reach the llama.cpp RPC server {endpoint} (is `appliance rpc-server` "
                "running there, and the port open from this box?)"
            )
        names.append(endpoint)
    return names
