"""The llama.cpp runtime inside a worker: load a GGUF and stream one completion at a time.

The walking skeleton serves requests one after another through llama-cpp-python's high-level
API; the engine issue replaces this with continuous batching over N sequence slots behind the
same three calls (`load`, `generate`, `system_info`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from appliance.engine.messages import Load, Submit


@dataclass
class Piece:
    """A bit of generated text, or the end of generation with its reason."""

    text: str
    finish_reason: str | None = None


class LlamaCppRuntime:
    def __init__(self) -> None:
        self._llm = None
        self.context_length = 0
        self.load_seconds = 0.0

    def load(self, request: Load) -> None:
        # Imported here: importing llama_cpp costs time and must not slow the worker's start
        # before it can report a broken install as a LoadFailed message.
        from llama_cpp import Llama

        started = time.monotonic()
        self._llm = Llama(
            model_path=request.model_path,
            n_ctx=request.context_length,
            n_threads=request.threads,
            n_threads_batch=request.threads,
            n_gpu_layers=request.gpu_layers,
            verbose=False,
        )
        self.context_length = self._llm.n_ctx()
        self.load_seconds = time.monotonic() - started

    def system_info(self) -> str:
        import llama_cpp

        return llama_cpp.llama_print_system_info().decode(errors="replace").strip()

    def count_tokens(self, prompt: str) -> int:
        assert self._llm is not None
        return len(self._llm.tokenize(prompt.encode(), add_bos=True, special=True))

    def generate(self, request: Submit, cancelled: Callable[[], bool]) -> Iterator[Piece]:
        """Yield text pieces, then one final Piece with the finish reason."""
        assert self._llm is not None
        stream = self._llm.create_completion(
            prompt=request.prompt,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
            stream=True,
        )
        finish_reason = "stop"
        try:
            for chunk in stream:
                if cancelled():
                    finish_reason = "cancelled"
                    break
                choice = chunk["choices"][0]
                if choice["text"]:
                    yield Piece(choice["text"])
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        finally:
            stream.close()
        yield Piece("", finish_reason)
