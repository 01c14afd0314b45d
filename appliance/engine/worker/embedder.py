"""Embedding requests, computed in bounded chunks between the batcher's decode steps.

The worker loop calls `step()` once per turn, after one generation step: each call decodes at
most `batch_tokens` tokens of the oldest request, so a request of many long texts delays each
generation step by one chunk, never by the whole request (it used to run inline, and 64 long
texts stopped every chat on the model for minutes). A text's vector is the mean of its tokens'
last hidden states, L2-normalised on request. May import engine.messages and llamacpp.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.engine.messages import Embed, Embeddings, Failed, FromWorker
from appliance.engine.worker.errors import RequestRejected

if TYPE_CHECKING:
    from appliance.engine.worker.llamacpp import LlamaRuntime


@dataclass
class _Job:
    request: Embed
    vectors: list[list[float]] = field(default_factory=list)
    tokens: list[int] | None = None
    """The current text's tokens (None: not tokenized yet)."""
    position: int = 0
    total: np.ndarray | None = None
    prompt_tokens: int = 0


class Embedder:
    def __init__(self, runtime: LlamaRuntime | Any, send: Callable[[FromWorker], None]) -> None:
        self.rt = runtime
        self.send = send
        self.jobs: deque[_Job] = deque()

    def submit(self, request: Embed) -> None:
        self.jobs.append(_Job(request))

    def cancel(self, request_id: str) -> None:
        self.jobs = deque(job for job in self.jobs if job.request.id != request_id)

    def has_work(self) -> bool:
        return bool(self.jobs)

    def step(self) -> None:
        """Decode one chunk of the oldest request; answer it when its last text is done."""
        job = self.jobs[0]
        try:
            finished = self._advance(job)
        except Exception as error:  # one bad request must not take the worker down
            self.jobs.popleft()
            code = "invalid_request_error" if isinstance(error, RequestRejected) else "engine_error"
            self.send(Failed(job.request.id, f"embedding failed: {error}", code=code))
            return
        if finished:
            self.jobs.popleft()
            self.send(Embeddings(job.request.id, job.vectors, job.prompt_tokens))

    def _advance(self, job: _Job) -> bool:
        texts = job.request.inputs
        if job.tokens is None:
            index = len(job.vectors)
            job.tokens = self.rt.embed_tokens(texts[index])
            if not job.tokens:
                raise RequestRejected(f"input {index} has no tokens to embed")
            job.position, job.total = 0, None
            job.prompt_tokens += len(job.tokens)
        chunk = job.tokens[job.position : job.position + self.rt.batch_tokens]
        part = self.rt.embed_chunk(chunk, job.position)
        job.total = part if job.total is None else job.total + part
        job.position += len(chunk)
        if job.position < len(job.tokens):
            return False
        assert job.total is not None
        job.vectors.append(_finish(job.total / len(job.tokens), job.request.normalize))
        job.tokens = None
        return len(job.vectors) == len(texts)


def _finish(vector: np.ndarray, normalize: bool) -> list[float]:
    if normalize:
        norm = float(np.linalg.norm(vector))
        vector = vector / norm if norm > 0 else vector
    return [float(x) for x in vector]
