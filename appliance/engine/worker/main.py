"""Entry point of an engine worker process: `python -m appliance.engine.worker.main`.

The loop is "drain the inbox, generate, send deltas". Frames arrive on stdin and leave on the
original stdout; fd 1 is then pointed at stderr, because native code (llama.cpp, CUDA, CANN)
may print to stdout and would corrupt the frame stream. End of stdin means the daemon is gone:
the worker exits rather than linger as an orphan holding device memory.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from collections import deque
from typing import BinaryIO

from appliance.engine.messages import (
    Cancel,
    Delta,
    Done,
    Failed,
    FromWorker,
    Load,
    LoadFailed,
    Ping,
    Pong,
    Ready,
    Submit,
    encode_frame,
    read_frame_sync,
    to_worker_decoder,
)
from appliance.engine.worker.llamacpp import LlamaCppRuntime

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
        self.runtime = LlamaCppRuntime()
        self.pending: deque[Submit] = deque()
        self.cancelled: set[str] = set()
        self.running = True

    def handle(self, message: object) -> None:
        if message is _EOF:
            self.running = False
        elif isinstance(message, Submit):
            self.pending.append(message)
        elif isinstance(message, Cancel):
            self.cancelled.add(message.id)
        elif isinstance(message, Ping):
            self.outbox.send(Pong(message.nonce))

    def drain(self, block: bool) -> None:
        try:
            message = self.inbox.get(block=block)
            self.handle(message)
            while True:
                self.handle(self.inbox.get_nowait())
        except queue.Empty:
            pass

    def load(self, request: Load) -> bool:
        try:
            self.runtime.load(request)
        except Exception as exc:  # any failure in native loading is reported, not raised
            self.outbox.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
            return False
        self.outbox.send(
            Ready(
                context_length=self.runtime.context_length,
                load_seconds=self.runtime.load_seconds,
                system_info=self.runtime.system_info(),
            )
        )
        return True

    def serve(self, request: Submit) -> None:
        if request.id in self.cancelled:
            self.cancelled.discard(request.id)
            return
        completion_tokens = 0

        def is_cancelled() -> bool:
            self.drain(block=False)
            return request.id in self.cancelled or not self.running

        try:
            prompt_tokens = self.runtime.count_tokens(request.prompt)
            if prompt_tokens >= self.runtime.context_length:
                self.outbox.send(
                    Failed(
                        request.id,
                        f"the prompt is {prompt_tokens} tokens but the model's context holds "
                        f"{self.runtime.context_length}; shorten the conversation",
                        code="context_length_exceeded",
                    )
                )
                return
            for piece in self.runtime.generate(request, is_cancelled):
                if piece.finish_reason is not None:
                    self.outbox.send(
                        Done(request.id, piece.finish_reason, prompt_tokens, completion_tokens)
                    )
                else:
                    completion_tokens += 1
                    self.outbox.send(Delta(request.id, piece.text))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.outbox.send(Failed(request.id, f"generation failed: {exc}"))
        finally:
            self.cancelled.discard(request.id)

    def run(self) -> int:
        first = self.inbox.get()
        if not isinstance(first, Load):
            print("worker: expected a Load message first", file=sys.stderr)
            return 2
        if not self.load(first):
            return 1
        while self.running:
            self.drain(block=not self.pending)
            if self.pending and self.running:
                self.serve(self.pending.popleft())
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
