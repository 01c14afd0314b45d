"""llama.cpp through llama-cpp-python's low-level API: model, shared context, tokens, samplers.

Owns the native handles of one worker: a model, one context whose unified KV cache holds every
sequence slot, per-sequence sampler chains, and (lazily) an embeddings context. The batching
logic lives in `batcher.py`; this module only wraps the C calls it needs, so that the native
surface is small and easy to review. May import engine.messages only (plus llama_cpp, numpy).
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable, Sequence

import llama_cpp as L
import numpy as np

from appliance.engine.messages import Load, Submit, TokenLogprob, TopLogprob


class LoadError(Exception):
    """The model file could not be loaded (its message is shown to the administrator)."""


def _silence_native_logs() -> None:
    # llama.cpp logs every tensor at load; keep warnings and errors only (they go to stderr,
    # which the daemon forwards to the journal).
    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def log(level: int, text: bytes, _: ctypes.c_void_p) -> None:
        message = text.decode(errors="replace")
        # With one KV pool for all slots llama.cpp sees a sequence that *could* grow to the
        # whole pool and warns; the batcher caps every sequence at the per-slot context.
        if level in (3, 4) and "n_ctx_seq" not in message:  # GGML_LOG_LEVEL_WARN, _ERROR
            sys.stderr.write(message)

    _silence_native_logs.callback = log  # type: ignore[attr-defined]  # keep it alive
    L.llama_log_set(log, None)


class LlamaRuntime:
    """One loaded model with a context of `slots` sequences of `context_length` tokens each."""

    def __init__(self, request: Load, on_progress: Callable[[float], None] | None = None) -> None:
        started = time.monotonic()
        L.llama_backend_init()
        _silence_native_logs()
        model_params = L.llama_model_default_params()
        model_params.n_gpu_layers = request.gpu_layers
        # The placement chose one device and made it the only one visible (CUDA_VISIBLE_DEVICES,
        # ASCEND_RT_VISIBLE_DEVICES): never let llama.cpp spread layers over others.
        model_params.split_mode = L.LLAMA_SPLIT_MODE_NONE
        model_params.main_gpu = 0
        if on_progress is not None:
            last = [0.0]

            @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_float, ctypes.c_void_p)
            def progress(fraction: float, _: ctypes.c_void_p) -> bool:
                if fraction - last[0] >= 0.05 or fraction >= 1.0:
                    last[0] = fraction
                    on_progress(float(fraction))
                return True

            self._progress_callback = progress  # the C side holds only a pointer
            model_params.progress_callback = progress
        self.model = L.llama_model_load_from_file(request.model_path.encode(), model_params)
        if not self.model:
            raise LoadError(f"llama.cpp could not load {request.model_path} (see the log above)")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        trained = L.llama_model_n_ctx_train(self.model)
        per_slot = request.context_length or trained
        self.context_length = min(per_slot, trained) if trained > 0 else per_slot
        self.slots = request.slots or self._slots_that_fit(self.context_length)
        self.batch_tokens = max(request.batch_tokens, self.slots)
        self.threads = request.threads
        params = L.llama_context_default_params()
        params.n_ctx = self.context_length * self.slots
        params.n_batch = self.batch_tokens
        params.n_ubatch = min(self.batch_tokens, 512)
        params.n_seq_max = self.slots
        # One KV pool shared by all sequences: prefix reuse across slots is a metadata copy.
        params.kv_unified = True
        params.n_threads = request.threads
        params.n_threads_batch = request.threads
        params.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, params)
        if not self.ctx:
            L.llama_model_free(self.model)
            raise LoadError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens "
                f"({self.slots} slots × {self.context_length}); lower engine.context_length "
                "or engine.slots"
            )
        self.memory = L.llama_get_memory(self.ctx)
        self._embed_ctx: ctypes.c_void_p | None = None
        self.bos = L.llama_vocab_bos(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.load_seconds = time.monotonic() - started

    def kv_bytes_per_token(self) -> int:
        """F16 K and V for every layer (an upper bound for MLA models such as deepseek2)."""
        n_head = max(1, L.llama_model_n_head(self.model))
        head_dim = L.llama_model_n_embd(self.model) // n_head
        kv_heads = L.llama_model_n_head_kv(self.model)
        return 2 * L.llama_model_n_layer(self.model) * kv_heads * head_dim * 2

    def _slots_that_fit(self, context_length: int, most: int = 16) -> int:
        # Half of the memory free now may go to KV; the rest stays for compute buffers, the
        # OS and other models. The planner refines this per device in a later version.
        available = _mem_available_bytes()
        per_slot = max(1, self.kv_bytes_per_token() * context_length)
        return max(1, min(most, int(available * 0.5 // per_slot)))

    # --- tokens -------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        data = text.encode()
        add = self.add_bos if add_bos is None else add_bos
        capacity = len(data) + 8
        buffer = (L.llama_token * capacity)()
        count = L.llama_tokenize(self.vocab, data, len(data), buffer, capacity, add, True)
        if count < 0:  # buffer too small: llama.cpp returns minus the needed size
            capacity = -count
            buffer = (L.llama_token * capacity)()
            count = L.llama_tokenize(self.vocab, data, len(data), buffer, capacity, add, True)
        return list(buffer[:count])

    def piece(self, token: int) -> bytes:
        # Special tokens are rendered as text: DeepSeek's tool-call markers are control tokens,
        # and the API must see them to parse tool calls (end-of-generation tokens never get here).
        buffer = ctypes.create_string_buffer(64)
        size = L.llama_token_to_piece(self.vocab, token, buffer, 64, 0, True)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = L.llama_token_to_piece(self.vocab, token, buffer, -size, 0, True)
        return buffer.raw[:size]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    # --- KV cache -----------------------------------------------------------------------

    def forget(self, seq: int, start: int = 0) -> None:
        """Drop a sequence's cached positions from `start` on."""
        L.llama_memory_seq_rm(self.memory, seq, start, -1)

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        L.llama_memory_seq_cp(self.memory, source, target, 0, length)

    # --- sampling -----------------------------------------------------------------------

    def new_sampler(self, request: Submit, choice: int) -> ctypes.c_void_p:
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = lambda sampler: L.llama_sampler_chain_add(chain, sampler)  # noqa: E731
        if request.logit_bias:
            biases = (L.llama_logit_bias * len(request.logit_bias))(
                *(L.llama_logit_bias(t, b) for t, b in request.logit_bias.items())
            )
            add(L.llama_sampler_init_logit_bias(self.n_vocab, len(request.logit_bias), biases))
        grammar = request.grammar or _grammar_from_schema(request.json_schema)
        if grammar:
            sampler = L.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not sampler:
                L.llama_sampler_free(chain)
                raise ValueError("the grammar for this request could not be parsed")
            add(sampler)
        if request.repeat_penalty != 1.0 or request.presence_penalty or request.frequency_penalty:
            add(
                L.llama_sampler_init_penalties(
                    self.n_vocab,
                    request.penalty_last_n,
                    request.repeat_penalty,
                    request.frequency_penalty,
                    request.presence_penalty,
                )
            )
        if request.temperature <= 0:
            add(L.llama_sampler_init_greedy())
            return chain
        if request.top_k > 0:
            add(L.llama_sampler_init_top_k(request.top_k))
        if request.top_p < 1.0:
            add(L.llama_sampler_init_top_p(request.top_p, 1))
        if request.min_p > 0:
            add(L.llama_sampler_init_min_p(request.min_p, 1))
        add(L.llama_sampler_init_temp(request.temperature))
        # Choices of one request must differ, yet stay reproducible for a given seed.
        seed = L.LLAMA_DEFAULT_SEED
        if request.seed is not None:
            seed = (request.seed + choice) & 0xFFFFFFFF
        add(L.llama_sampler_init_dist(seed))
        return chain

    def sample(self, sampler: ctypes.c_void_p, batch_index: int) -> int:
        return L.llama_sampler_sample(sampler, self.ctx, batch_index)

    @staticmethod
    def accept(sampler: ctypes.c_void_p, token: int) -> None:
        L.llama_sampler_accept(sampler, token)

    @staticmethod
    def free_sampler(sampler: ctypes.c_void_p) -> None:
        L.llama_sampler_free(sampler)

    def logprobs(self, batch_index: int, token: int, top: int) -> TokenLogprob:
        raw = L.llama_get_logits_ith(self.ctx, batch_index)
        logits = np.ctypeslib.as_array(raw, (self.n_vocab,))
        shifted = logits - logits.max()
        log_probs = shifted - np.log(np.exp(shifted).sum())
        best: list[TopLogprob] = []
        if top > 0:
            ids = np.argpartition(-log_probs, top)[:top]
            ids = ids[np.argsort(-log_probs[ids])]
            best = [TopLogprob(self._text(int(i)), float(log_probs[i])) for i in ids]
        return TokenLogprob(self._text(token), float(log_probs[token]), best)

    def _text(self, token: int) -> str:
        return self.piece(token).decode(errors="replace")

    # --- decoding -----------------------------------------------------------------------

    def decode(self, batch: L.llama_batch) -> int:
        """Run one decode step; 0 on success, 1 when the KV cache has no room, <0 on error."""
        return L.llama_decode(self.ctx, batch)

    def new_batch(self) -> L.llama_batch:
        return L.llama_batch_init(self.batch_tokens, 0, self.slots)

    # --- embeddings ---------------------------------------------------------------------

    def embed(self, texts: Sequence[str], normalize: bool) -> tuple[list[list[float]], int]:
        """Mean-pooled embeddings, one per text, from a second context on the same weights."""
        if self._embed_ctx is None:
            params = L.llama_context_default_params()
            params.n_ctx = self.context_length
            params.n_batch = self.context_length
            params.n_ubatch = self.context_length
            params.n_seq_max = 1
            params.embeddings = True
            params.pooling_type = L.LLAMA_POOLING_TYPE_MEAN
            params.n_threads = params.n_threads_batch = self.threads
            self._embed_ctx = L.llama_init_from_model(self.model, params)
            if not self._embed_ctx:
                raise ValueError("this model cannot produce embeddings (context creation failed)")
        n_embd = L.llama_model_n_embd(self.model)
        vectors: list[list[float]] = []
        total = 0
        batch = L.llama_batch_init(self.context_length, 0, 1)
        try:
            for text in texts:
                tokens = self.tokenize(text)[: self.context_length]
                total += len(tokens)
                L.llama_memory_clear(L.llama_get_memory(self._embed_ctx), True)
                batch.n_tokens = len(tokens)
                for i, token in enumerate(tokens):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = True
                if L.llama_decode(self._embed_ctx, batch) != 0:
                    raise ValueError("llama.cpp failed to compute an embedding")
                raw = L.llama_get_embeddings_seq(self._embed_ctx, 0)
                vector = np.ctypeslib.as_array(raw, (n_embd,)).astype(np.float64)
                if normalize:
                    norm = np.linalg.norm(vector)
                    vector = vector / norm if norm > 0 else vector
                vectors.append(vector.tolist())
        finally:
            L.llama_batch_free(batch)
        return vectors, total

    def system_info(self) -> str:
        return L.llama_print_system_info().decode(errors="replace").strip()


def _mem_available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _grammar_from_schema(schema: str | None) -> str | None:
    if not schema:
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema)
