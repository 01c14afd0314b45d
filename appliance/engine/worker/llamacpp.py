"""llama.cpp through llama-cpp-python's low-level API: model, shared context, tokens, samplers.

Owns the native handles of one worker: a model, one context whose KV cache holds one stream per
sequence slot, per-sequence sampler chains, and (lazily) an embeddings context. The batching
logic lives in `batcher.py`; this module only wraps the C calls it needs, so that the native
surface is small and easy to review. May import engine.messages and the worker's errors only
(plus llama_cpp, numpy).
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable, Sequence

import llama_cpp as L
import numpy as np

from appliance.engine.messages import Load, Submit, TokenLogprob, TopLogprob
from appliance.engine.worker.draft_model import DraftModel
from appliance.engine.worker.errors import LoadError, RequestRejected


class Sampler:
    """One choice's sampling state: llama.cpp's sampler chain, and its grammar kept apart.

    llama.cpp's own `llama_sampler_sample` asserts that some token survives the chain and its
    grammar aborts the process when asked to accept a token it rules out; a grammar that
    allows no token at some point (an unsatisfiable schema) would kill every conversation on
    the model. With the grammar outside the chain, `LlamaRuntime.sample` applies it first and
    fails the one request when nothing is left.
    """

    def __init__(
        self, chain: ctypes.c_void_p, grammar: ctypes.c_void_p | None = None, greedy: bool = False
    ) -> None:
        self.chain = chain
        self.grammar = grammar
        self.greedy = greedy
        """The chain is llama.cpp's greedy sampler alone (no bias, penalties or grammar)."""


def _silence_native_logs() -> None:
    # llama.cpp logs every tensor at load; keep warnings and errors only (they go to stderr,
    # which the daemon forwards to the journal).
    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def log(level: int, text: bytes, _: ctypes.c_void_p) -> None:
        message = text.decode(errors="replace")
        # llama.cpp warns when the per-sequence context is below the model's trained one; the
        # batcher caps every sequence at the per-slot context on purpose.
        if level in (3, 4) and "n_ctx_seq" not in message:  # GGML_LOG_LEVEL_WARN, _ERROR
            sys.stderr.write(message)

    _silence_native_logs.callback = log  # type: ignore[attr-defined]  # keep it alive
    L.llama_log_set(log, None)


_MAX_LOGIT_ROWS = 4096
"""Cached logit-row views; more than a batch's positions only after llama.cpp reallocated."""


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
        self.slots = max(1, request.slots)  # the placement sized them from the fit planner
        self.batch_tokens = max(request.batch_tokens, self.slots)
        self.threads = request.threads
        self.draft_tokens = request.draft_tokens
        params = L.llama_context_default_params()
        params.n_ctx = self.context_length * self.slots
        params.n_batch = self.batch_tokens
        params.n_ubatch = min(self.batch_tokens, 512)
        params.n_seq_max = self.slots
        # One KV stream per slot, as llama-server has it: a step attends over its sequences'
        # own cells only. In one unified pool every step attended over the highest cell any
        # conversation held, cached finished ones included (up to slots × context cells), which
        # cost most at one stream and in prefill. A prefix copy across slots is then a buffer
        # copy of the source stream (see `copy_prefix`).
        params.kv_unified = False
        self.one_pass_per_run = True
        """With a stream per slot, llama.cpp splits a step's batch wherever the next sequence
        id is not the last one's plus one, and each part reads all the weights again (measured:
        8 sequences on ids 0-7 against 0-1 and 4-9, see the batcher's placement)."""
        params.n_threads = request.threads
        params.n_threads_batch = request.threads
        params.no_perf = True
        if request.kv_cache_type not in _KV_TYPES:
            raise LoadError(
                f"engine.kv_cache_type {request.kv_cache_type!r} is not one of "
                f"{', '.join(_KV_TYPES)}"
            )
        params.type_k = params.type_v = _KV_TYPES[request.kv_cache_type]
        if request.kv_cache_type != "f16":
            # llama.cpp stores a quantized V cache only with flash attention.
            params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED
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
        self._candidates: np.ndarray | None = None
        # numpy views of logit rows by address: making one costs ~30 us (a ctypes array type
        # each time), and the rows sit at the same addresses step after step.
        self._logit_rows: dict[int, np.ndarray] = {}
        self._pieces: dict[int, bytes] = {}
        self._ids: np.ndarray | None = None
        self.bos = L.llama_vocab_bos(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.draft_model: DraftModel | None = None
        if request.draft_model_path and self.draft_tokens > 0:
            self.draft_model = self._load_draft(request)
        self.load_seconds = time.monotonic() - started

    def _load_draft(self, request: Load) -> DraftModel | None:
        """The draft model on the main model's device (wholly, or not at all when the main
        model is only partly offloaded); a draft the administrator did not name that fails to
        load is left out, the model is served without it."""
        try:
            return DraftModel(
                request.draft_model_path, slots=self.slots, context_length=self.context_length,
                threads=self.threads, gpu_layers=request.draft_gpu_layers, main_vocab=self.n_vocab,
            )  # fmt: skip
        except LoadError as error:
            if request.draft_required:
                raise
            print(f"worker: serving without a draft model: {error}", file=sys.stderr, flush=True)
            return None

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
        tokens = list(buffer[:count])
        # A chat template that writes the BOS text itself, for a model that also adds BOS:
        # one is what the model was trained with.
        if add and count > 1 and tokens[0] == tokens[1] == self.bos:
            del tokens[0]
        return tokens

    def piece(self, token: int) -> bytes:
        # Special tokens are rendered as text: DeepSeek's tool-call markers are control tokens,
        # and the API must see them to parse tool calls (end-of-generation tokens never get here).
        # A token's bytes never change: each is asked of llama.cpp once.
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buffer = ctypes.create_string_buffer(64)
        size = L.llama_token_to_piece(self.vocab, token, buffer, 64, 0, True)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = L.llama_token_to_piece(self.vocab, token, buffer, -size, 0, True)
        piece = self._pieces[token] = buffer.raw[:size]
        return piece

    def is_end_of_generation(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    # --- KV cache -----------------------------------------------------------------------

    def forget(self, seq: int, start: int = 0) -> None:
        """Drop a sequence's cached positions from `start` on."""
        L.llama_memory_seq_rm(self.memory, seq, start, -1)

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        # Across streams llama.cpp copies only whole streams (it asserts on a partial range):
        # copy all of the source's cells, then drop what lies past the shared prefix. The
        # buffer copy itself runs at the start of the next decode.
        L.llama_memory_seq_cp(self.memory, source, target, -1, -1)
        L.llama_memory_seq_rm(self.memory, target, length, -1)

    # --- sampling -----------------------------------------------------------------------

    def check_request(self, request: Submit) -> None:
        """Refuse what would make llama.cpp read out of bounds or allocate without limit."""
        bad = [t for t in request.logit_bias if not 0 <= t < self.n_vocab]
        if bad:
            raise RequestRejected(
                f"logit_bias: token id {bad[0]} is not in this model's vocabulary "
                f"(ids 0 to {self.n_vocab - 1})"
            )
        if request.top_logprobs > self.n_vocab - 1:
            raise RequestRejected(f"top_logprobs: the vocabulary has only {self.n_vocab} tokens")

    def grammar_of(self, request: Submit) -> str | None:
        """The GBNF text constraining the request: its own, or its JSON schema's."""
        if request.grammar:
            return request.grammar
        if not request.json_schema:
            return None
        try:
            return _grammar_from_schema(request.json_schema)
        except Exception as error:  # the converter raises anything on a malformed schema
            raise RequestRejected(
                "response_format (or the forced tool's parameters): the JSON schema cannot be "
                "used to constrain the output "
                f"({type(error).__name__}: {error}); check it against the JSON Schema spec"
            ) from None

    def new_sampler(self, request: Submit, choice: int, grammar: str | None = None) -> Sampler:
        self.check_request(request)
        grammar_sampler = None
        if grammar:
            grammar_sampler = L.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not grammar_sampler:
                raise RequestRejected(
                    "the grammar for this request could not be parsed (see the log); "
                    "check its GBNF syntax"
                )
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = lambda sampler: L.llama_sampler_chain_add(chain, sampler)  # noqa: E731
        if request.logit_bias:
            biases = (L.llama_logit_bias * len(request.logit_bias))(
                *(L.llama_logit_bias(t, b) for t, b in request.logit_bias.items())
            )
            add(L.llama_sampler_init_logit_bias(self.n_vocab, len(request.logit_bias), biases))
        if request.repeat_penalty != 1.0 or request.presence_penalty or request.frequency_penalty:
            # llama.cpp's sampler reads -1 as "off" (its servers mean "the whole context") and
            # allocates a ring of last_n tokens per choice: never more than the context.
            last_n = request.penalty_last_n
            last_n = self.context_length if last_n < 0 else min(last_n, self.context_length)
            add(
                L.llama_sampler_init_penalties(
                    self.n_vocab,
                    last_n,
                    request.repeat_penalty,
                    request.frequency_penalty,
                    request.presence_penalty,
                )
            )
        if request.temperature <= 0:
            add(L.llama_sampler_init_greedy())
            plain = L.llama_sampler_chain_n(chain) == 1 and grammar_sampler is None
            return Sampler(chain, grammar_sampler, greedy=plain)
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
        return Sampler(chain, grammar_sampler)

    def sample(self, sampler: Sampler, batch_index: int) -> int:
        if sampler.greedy:
            # What the greedy chain picks (the first highest logit; it keeps no state), read
            # in place: llama_sampler_sample first copies the whole vocabulary into a
            # candidate array, ~0.1 ms a token on a 49k vocabulary, 1% at one stream.
            return int(self._logit_row(batch_index).argmax())
        if sampler.grammar is None:
            return L.llama_sampler_sample(sampler.chain, self.ctx, batch_index)
        # What llama_sampler_sample does, with a check between the grammar and the rest.
        if self._candidates is None:
            self._candidates = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
            self._ids = np.arange(self.n_vocab, dtype=np.int32)
        data = self._candidates
        # Refilled whole: the samplers of the last call sorted and shrank it in place.
        data["id"] = self._ids
        data["logit"] = self._logit_row(batch_index)
        data["p"] = 0.0
        candidates = L.llama_token_data_array(
            data.ctypes.data_as(ctypes.POINTER(L.llama_token_data)), self.n_vocab, -1, False
        )
        L.llama_sampler_apply(sampler.grammar, ctypes.byref(candidates))
        if not np.isfinite(data["logit"][: candidates.size]).any():
            raise RequestRejected(
                "the grammar or JSON schema allows no token at this point of the answer "
                f"(after {self.n_vocab} candidates were ruled out); it may be unsatisfiable"
            )
        L.llama_sampler_apply(sampler.chain, ctypes.byref(candidates))
        selected = candidates.selected
        if not 0 <= selected < candidates.size:
            raise RequestRejected("no token could be sampled under this request's grammar")
        token = int(candidates.data[selected].id)
        L.llama_sampler_accept(sampler.grammar, token)
        L.llama_sampler_accept(sampler.chain, token)
        return token

    @staticmethod
    def accept(sampler: Sampler, token: int) -> None:
        """Feed a token the batcher forced (only for choices without a grammar)."""
        L.llama_sampler_accept(sampler.chain, token)

    @staticmethod
    def free_sampler(sampler: Sampler) -> None:
        L.llama_sampler_free(sampler.chain)
        if sampler.grammar is not None:
            L.llama_sampler_free(sampler.grammar)

    def _logit_row(self, batch_index: int) -> np.ndarray:
        """The logits of one batch position, in place (valid until the next decode)."""
        pointer = L.llama_get_logits_ith(self.ctx, batch_index)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        row = self._logit_rows.get(address)
        if row is None:
            row = np.ctypeslib.as_array(pointer, (self.n_vocab,))  # NULL raises, never cached
            if len(self._logit_rows) >= _MAX_LOGIT_ROWS:  # llama.cpp moved its buffer
                self._logit_rows.clear()
            self._logit_rows[address] = row
        return row

    def logprobs(self, batch_index: int, token: int, top: int) -> TokenLogprob:
        logits = self._logit_row(batch_index)
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

    def embed_tokens(self, text: str) -> list[int]:
        """The tokens of one text to embed, cut to the context."""
        return self.tokenize(text)[: self.context_length]

    def embed_chunk(self, tokens: Sequence[int], start: int) -> np.ndarray:
        """Decode `tokens` (at most `batch_tokens`) at positions `start`...; return the sum of
        their last hidden states (float64), for the caller's mean.

        A second context on the same weights, without pooling: llama.cpp pools only within
        one decode call, and one call per whole text would stall generation for as long as the
        text takes. Chunks through the KV cache give the same states as one call.
        """
        ctx = self._embedding_context()
        if start == 0:
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
        count = len(tokens)
        batch = L.llama_batch_init(count, 0, 1)
        try:
            batch.n_tokens = count
            for i, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            if L.llama_decode(ctx, batch) != 0:
                raise RequestRejected("llama.cpp failed to compute an embedding")
            n_embd = L.llama_model_n_embd(self.model)
            states = np.ctypeslib.as_array(L.llama_get_embeddings(ctx), (count, n_embd))
            return states.astype(np.float64).sum(axis=0)
        finally:
            L.llama_batch_free(batch)

    def _embedding_context(self) -> ctypes.c_void_p:
        if self._embed_ctx is None:
            params = L.llama_context_default_params()
            params.n_ctx = self.context_length
            params.n_batch = params.n_ubatch = self.batch_tokens
            params.n_seq_max = 1
            params.embeddings = True
            params.pooling_type = L.LLAMA_POOLING_TYPE_NONE
            params.n_threads = params.n_threads_batch = self.threads
            self._embed_ctx = L.llama_init_from_model(self.model, params)
            if not self._embed_ctx:
                raise RequestRejected(
                    "this model cannot produce embeddings (context creation failed)"
                )
        return self._embed_ctx

    def system_info(self) -> str:
        return L.llama_print_system_info().decode(errors="replace").strip()


# ggml_type ids of the KV cache element types offered (engine.kv_cache_type).
_KV_TYPES = {"f16": L.GGML_TYPE_F16, "q8_0": L.GGML_TYPE_Q8_0}

# llama_token_data: {llama_token id; float logit; float p}, packed as llama.h declares it.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def _grammar_from_schema(schema: str | None) -> str | None:
    if not schema:
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema)


__all__ = ["LlamaRuntime", "LoadError", "RequestRejected", "Sampler"]
