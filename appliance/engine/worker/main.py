"""Entry point of an engine worker process: `python -m appliance.engine.worker.main`.

The loop is "drain the inbox, step the batch, send deltas" (llama.cpp's server loop), with one
bounded embedding chunk after each step (`embedder.py`), so neither kind of work starves the
other. Nothing one request does ends the process: the batcher and the embedder fail that request
alone, a frame that is too large or undecodable is skipped, and a step that fails for no single
request's fault fails the busy requests and the loop goes on. Frames
arrive on stdin and leave on the original stdout; fd 1 is then pointed at stderr, because native
code (llama.cpp, CUDA, CANN) may print to stdout and would corrupt the frame stream. End of stdin
means the daemon is gone: the worker exits rather than linger holding device memory.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from typing import BinaryIO

import msgspec

from appliance.engine.messages import (
    Cancel,
    Embed,
    FrameTooLarge,
    Load,
    LoadFailed,
    LoadProgress,
    Ping,
    Pong,
    Ready,
    StatsRequest,
    Submit,
    read_frame_sync,
    to_worker_decoder,
)
from appliance.engine.worker.outbox import Outbox
from appliance.runtime.loader import activate, add_rpc_servers

_EOF = object()


def _log(text: str) -> None:
    print(f"worker: {text}", file=sys.stderr, flush=True)


def _read_inbox(stream: BinaryIO, inbox: queue.Queue[object]) -> None:
    """Frames from the daemon into the inbox. A bad frame is skipped, never fatal: a dead
    reader would leave the worker deaf while its process lives on (and hang detection would
    wait on pings it can no longer read). Only an unreadable stream ends the worker."""
    try:
        while True:
            try:
                payload = read_frame_sync(stream)
            except FrameTooLarge as error:
                _log(f"skipped a request: {error}")
                continue
            if payload is None:
                break
            try:
                inbox.put(to_worker_decoder.decode(payload))
            except msgspec.DecodeError as error:
                _log(f"skipped an undecodable frame: {error}")
    except Exception:
        traceback.print_exc(file=sys.stderr)
    finally:
        inbox.put(_EOF)


def raise_oom_score(value: int | None) -> None:
    """Make this worker the kernel's first choice when memory runs out (never the daemon).

    Raising one's own `oom_score_adj` needs no privilege; the daemon's stays as systemd set it.
    """
    if value is None:
        return
    path = "/proc/self/oom_score_adj"
    try:
        with open(path) as handle:
            current = int(handle.read().strip() or 0)
        if value > current:
            with open(path, "w") as handle:
                handle.write(str(value))
    except (OSError, ValueError) as error:
        _log(f"could not set {path} to {value}: {error}")


class Worker:
    def __init__(self, inbox: queue.Queue[object], outbox: Outbox) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.running = True
        self.runtime = None
        self.batcher = None
        self.embedder = None

    def load(self, request: Load) -> bool:
        raise_oom_score(request.oom_score_adj)
        self.outbox.interval_s = request.stream_interval_ms / 1000
        try:
            # Imported here so that a broken runtime install is reported as LoadFailed.
            from appliance.engine.worker.batcher import Batcher
            from appliance.engine.worker.embedder import Embedder

            progress = lambda f: self.outbox.send(LoadProgress(f))  # noqa: E731
            if request.engine == "onnxruntime":
                # ONNX models (onnxruntime-genai layout); llama.cpp is never loaded here.
                from appliance.engine.worker.onnxrt import OnnxRuntime

                self.runtime = OnnxRuntime(request, on_progress=progress)
            else:
                # The placement names the build and the backends; llama_cpp is imported only
                # after they are registered, so this process never runs an untested variant.
                activate(request.runtime_dir, request.backend_libs)
                if request.rpc_servers:  # devices on other boxes, as `llama-server --rpc` adds
                    add_rpc_servers(request.rpc_servers)
                from appliance.engine.worker.llamacpp import LlamaRuntime

                self.runtime = LlamaRuntime(request, on_progress=progress)
            self.batcher = Batcher(self.runtime, self.outbox.send)
            self.embedder = Embedder(self.runtime, self.outbox.send)
        except Exception as exc:  # any failure in native loading is reported, not raised
            self.outbox.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
            return False
        self.outbox.send(
            Ready(
                context_length=self.runtime.context_length,
                load_seconds=self.runtime.load_seconds,
                system_info=self.runtime.system_info(),
                slots=self.runtime.slots,
                draft_model_loaded=getattr(self.runtime, "draft_model", None) is not None,
            )
        )
        return True

    def handle(self, message: object) -> None:
        assert self.batcher is not None and self.embedder is not None
        if message is _EOF:
            self.running = False
        elif isinstance(message, Submit):
            self.batcher.submit(message)
        elif isinstance(message, Cancel):
            self.batcher.cancel(message.id)
            self.embedder.cancel(message.id)
        elif isinstance(message, Ping):
            self.outbox.send(Pong(message.nonce))
        elif isinstance(message, StatsRequest):
            self.outbox.send(self.batcher.stats(message.nonce))
        elif isinstance(message, Embed):
            self.embedder.submit(message)

    def drain(self, block: bool) -> None:
        if block:
            self.outbox.flush()  # nothing held while idle
        try:
            message = self.inbox.get(block=block)
            while True:
                if isinstance(message, Submit | Embed):
                    # The next step may be a long prompt chunk: held tokens go out before it.
                    self.outbox.flush()
                self.handle(message)
                message = self.inbox.get_nowait()
        except queue.Empty:
            pass

    def run(self) -> int:
        first = self.inbox.get()
        if not isinstance(first, Load):
            print("worker: expected a Load message first", file=sys.stderr)
            return 2
        if not self.load(first):
            return 1
        assert self.batcher is not None and self.embedder is not None
        batcher, embedder = self.batcher, self.embedder
        while self.running:
            self.drain(block=not (batcher.has_work() or embedder.has_work()))
            if not self.running:
                break
            # One decode step, then one bounded embedding chunk: neither starves the other.
            if batcher.has_work():
                try:
                    with self.outbox.gathered():
                        batcher.step()
                except Exception as error:
                    # Not explained by one request (those fail alone, inside the batcher):
                    # fail the busy requests and keep serving; the process stays healthy.
                    traceback.print_exc(file=sys.stderr)
                    batcher.fail_all(error)
            if embedder.has_work():
                self.outbox.flush()
                embedder.step()
        return 0


SPIN_ENVIRONMENT = {"GOMP_SPINCOUNT": "1000"}
"""OpenMP settings for the compute threads, unless the administrator set them. llama.cpp's CPU
backend syncs its threads with OpenMP barriers hundreds of times per token, and libgomp's
default spins ~300,000 times before sleeping: when anything else wants the CPUs (the daemon
streaming answers, another worker, other tenants of a VM) a spinning thread holds the core the
thread it waits for needs. On a 2-vCPU VM at load 7, 8 streams went from 8 tok/s (default) to
~100 tok/s with a 1,000-spin limit (benchmarks/RESULTS.md); a barrier that completes within the
short spin, as on an idle machine, is unaffected."""


def main() -> int:
    # Before llama.cpp (and with it libgomp) is loaded: libgomp reads these once, at load.
    for name, value in SPIN_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    ipc_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    inbox: queue.Queue[object] = queue.Queue()
    reader = threading.Thread(
        target=_read_inbox, args=(sys.stdin.buffer, inbox), name="inbox", daemon=True
    )
    reader.start()
    return Worker(inbox, Outbox(ipc_out, _log)).run()


if __name__ == "__main__":
    sys.exit(main())
