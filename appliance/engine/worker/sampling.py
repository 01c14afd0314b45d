"""Sampling in NumPy from a row of logits, with the llama.cpp engine's parameters and order.

For runtimes that hand back logits rather than own a sampler (onnxruntime). llama.cpp's own
chain needs a llama vocabulary, so the GGUF engine keeps using it; this one applies the same
`Submit` fields in the same order as `llamacpp.LlamaRuntime.new_sampler` builds its chain:
logit bias, repetition/frequency/presence penalties over the last `penalty_last_n` tokens,
then greedy (temperature <= 0) or top-k, top-p, min-p, temperature and a seeded draw (choice
`k` of a request draws with seed + k, so choices differ yet repeat for one seed). Also the
log-probabilities both engines report. May import engine.messages and numpy only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from appliance.engine.messages import Submit, TokenLogprob, TopLogprob


class NumpySampler:
    def __init__(self, request: Submit, choice: int, context_length: int) -> None:
        self.temperature = request.temperature
        self.top_k, self.top_p, self.min_p = request.top_k, request.top_p, request.min_p
        self.repeat = request.repeat_penalty
        self.frequency, self.presence = request.frequency_penalty, request.presence_penalty
        self.penalized = self.repeat != 1.0 or bool(self.frequency) or bool(self.presence)
        last_n = request.penalty_last_n
        last_n = context_length if last_n < 0 else min(last_n, context_length)
        self.history: deque[int] = deque(maxlen=max(last_n, 0))
        self.bias_ids = np.array(list(request.logit_bias), dtype=np.int64)
        self.bias = np.array(list(request.logit_bias.values()), dtype=np.float32)
        seed = None if request.seed is None else (request.seed + choice) & 0xFFFFFFFF
        self.rng = np.random.default_rng(seed)
        self.matcher: Any = None
        """The runtime's grammar state for this choice (llguidance's matcher), if constrained."""

    def accept(self, token: int) -> None:
        if self.history.maxlen:
            self.history.append(token)

    def sample(self, logits: np.ndarray) -> int:
        """The next token from one row of logits (not modified); the caller then `accept`s it."""
        x = np.array(logits, dtype=np.float32)
        if self.bias_ids.size:
            x[self.bias_ids] += self.bias
        if self.penalized and self.history:
            ids, counts = np.unique(np.fromiter(self.history, dtype=np.int64), return_counts=True)
            values = x[ids]
            values = np.where(values > 0, values / self.repeat, values * self.repeat)
            x[ids] = values - counts * self.frequency - self.presence
        if self.temperature <= 0:
            return int(np.argmax(x))
        ids = np.arange(x.size)
        if 0 < self.top_k < x.size:
            ids = np.argpartition(-x, self.top_k)[: self.top_k]
        ids = ids[np.argsort(-x[ids], kind="stable")]
        values = x[ids]
        if self.top_p < 1.0:
            probs = _softmax(values)
            keep = int(np.searchsorted(np.cumsum(probs), self.top_p)) + 1
            ids, values = ids[:keep], values[:keep]
        if self.min_p > 0:
            # llama.cpp keeps tokens whose probability is at least min_p times the best one's.
            keep = values >= values[0] + np.log(self.min_p)
            ids, values = ids[keep], values[keep]
        probs = _softmax(values / self.temperature)
        return int(ids[self.rng.choice(ids.size, p=probs)])


def token_logprob(
    logits: np.ndarray, token: int, top: int, text: Callable[[int], str]
) -> TokenLogprob:
    """The chosen token's log-probability and the `top` most likely alternatives."""
    row = logits.astype(np.float64)
    shifted = row - row.max()
    log_probs = shifted - np.log(np.exp(shifted).sum())
    best: list[TopLogprob] = []
    if top > 0:
        ids = np.argpartition(-log_probs, top)[:top]
        ids = ids[np.argsort(-log_probs[ids])]
        best = [TopLogprob(text(int(i)), float(log_probs[i])) for i in ids]
    return TokenLogprob(text(token), float(log_probs[token]), best)


def _softmax(values: np.ndarray) -> np.ndarray:
    e = np.exp(values - values.max())
    return e / e.sum()
