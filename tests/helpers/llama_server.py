"""llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`) as a real upstream.

Test helper. The server runs in a subprocess on loopback, with llama.cpp activated through
`appliance.runtime` first (the self-tested CPU variant, as everything that loads llama.cpp
here must), then `llama_cpp.server`'s own `__main__` with its own command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from helpers.daemon import free_port
from helpers.runtime import runtime_report

_LAUNCH = """
import runpy, sys
from appliance.runtime.loader import activate
activate(sys.argv[1], [sys.argv[2]])
sys.argv = ["llama_cpp.server", *sys.argv[3:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-answer, as a crashed or unplugged one does."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_llama_server(
    model: Path,
    log_dir: Path,
    *,
    api_key: str | None = None,
    alias: str = "smollm2-upstream",
    port: int | None = None,
) -> LlamaServer:
    """Start the server (on `port`, e.g. to bring one back where it was) and wait for it."""
    report = runtime_report()
    assert report.llama_cpp_dir and report.cpu_variant, report
    port = port or free_port()
    args = [
        "--model", str(model), "--model_alias", alias, "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "false",
    ]  # fmt: skip
    if api_key:
        args += ["--api_key", api_key]
    log_path = log_dir / f"llama-server-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    process = subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, report.llama_cpp_dir, report.cpu_variant.path, *args],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    server = LlamaServer(process, port, log_path)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"llama_cpp.server exited:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/models", headers=headers, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.kill()
    raise AssertionError(f"llama_cpp.server never answered:\n{server.log()}")
