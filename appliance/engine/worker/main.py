"""Entry point of an engine worker process: `python -m appliance.engine.worker.main`.

The loop is "drain the inbox, step the batch, send deltas" (llama.cpp's server loop). Frames
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

from appliance.engine.messages import (
    Cancel,
    Embed,
    Embeddings,
    Failed,
    FromWorker,
    Load,
    LoadFailed,
    LoadProgress,
    Ping,
    Pong,
    Ready,
    StatsRequest,
    Submit,
    encode_frame,
    read_frame_sync,
    to_worker_decoder,
)
from appliance.runtime.loader import activate

_EOF = object()


class Outbox:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        with self._lock:
            self._stream.write(encode_frame(message))
            self._stream.flush()


def _read_inbox(stream: BinaryIO, inbox: queue.Queue[object]) -> None:
    while (payload := read_frame_sync(stream)) is not None:
        inbox.put(to_worker_decoder.decode(payload))
    inbox.put(_EOF)


class Worker:
    def __init__(self, inbox: queue.Queue[object], outbox: Outbox) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.running = True
        self.runtime = None
        self.batcher = None

    def load(self, request: Load) -> bool:
        try:
            # The placement names the build and the backends; llama_cpp is imported only after
            # they are registered, so this process never runs a variant nobody tested.
            activate(request.runtime_dir, request.backend_libs)
            # Imported here so that a broken llama.cpp install is reported as LoadFailed.
            from appliance.engine.worker.batcher import Batcher
            from appliance.engine.worker.llamacpp import LlamaRuntime

            self.runtime = LlamaRuntime(
                request, on_progress=lambda f: self.outbox.send(LoadProgress(f))
            )
            self.batcher = Batcher(self.runtime, self.outbox.send)
        except Exception as exc:  # any failure in native loading is reported, not raised
            self.outbox.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
            return False
        self.outbox.send(
            Ready(
                context_length=self.runtime.context_length,
                load_seconds=self.runtime.load_seconds,
                system_info=self.runtime.system_info(),
                slots=self.runtime.slots,
            )
        )
        return True

    def handle(self, message: object) -> None:
        assert self.batcher is not None and self.runtime is not None
        if message is _EOF:
            self.running = False
        elif isinstance(message, Submit):
            self.batcher.submit(message)
        elif isinstance(message, Cancel):
            self.batcher.cancel(message.id)
        elif isinstance(message, Ping):
            self.outbox.send(Pong(message.nonce))
        elif isinstance(message, StatsRequest):
            self.outbox.send(self.batcher.stats(message.nonce))
        elif isinstance(message, Embed):
            self.embed(message)

    def embed(self, request: Embed) -> None:
        assert self.runtime is not None
        try:
            vectors, tokens = self.runtime.embed(request.inputs, request.normalize)
        except Exception as exc:
            self.outbox.send(Failed(request.id, f"embedding failed: {exc}"))
            return
        self.outbox.send(Embeddings(request.id, vectors, tokens))

    def drain(self, block: bool) -> None:
        try:
            self.handle(self.inbox.get(block=block))
            while True:
                self.handle(self.inbox.get_nowait())
        except queue.Empty:
            pass

    def run(self) -> int:
        first = self.inbox.get()
        if not isinstance(first, Load):
            print("worker: expected a Load message first", file=sys.stderr)
            return 2
        if not self.load(first):
            return 1
        assert self.batcher is not None
        while self.running:
            self.drain(block=not self.batcher.has_work())
            if self.running and self.batcher.has_work():
                try:
                    self.batcher.step()
                except Exception:
                    # A bug in one step must not take every conversation down silently.
                    traceback.print_exc(file=sys.stderr)
                    raise
        return 0


def main() -> int:
    ipc_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    inbox: queue.Queue[object] = queue.Queue()
    reader = threading.Thread(
        target=_read_inbox, args=(sys.stdin.buffer, inbox), name="inbox", daemon=True
    )
    reader.start()
    return Worker(inbox, Outbox(ipc_out)).run()


if __name__ == "__main__":
    sys.exit(main())
