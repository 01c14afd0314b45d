"""onnxruntime as an engine runtime: one decoder session, its KV cache, tokens and sampling.

Implements the runtime surface `batcher.Batcher` drives (the same one `llamacpp.LlamaRuntime`
offers): tokenize/piece/end-of-generation, a batch of (token, position, sequence) entries that
`decode` runs, per-sequence KV (`forget`, `copy_prefix`), samplers and log-probabilities. So
admission, prefix reuse, n choices, stop strings, UTF-8 handling, streaming, cancellation and
the reasoning budget are the batcher's, shared with GGUF models, not copied here.

How a batch runs (see `onnx_layout.py` for what the folder must hold):
- GroupQueryAttention graphs keep a per-row sequence length (seqlens_k from the attention
  mask), so every generating sequence advances in ONE run: the KV cache is one buffer per
  layer of [slots, kv_heads, context + 1, head_size] on the placed device, bound with IO binding
  as both past and present (onnxruntime-genai's past_present_share_buffer), so it never
  leaves the device. A new prompt (or prompt chunk) runs alone, batch 1, on its slot's rows.
- Other graphs (plain Concat attention: one past length for the whole batch) run one sequence
  per call, with that sequence's cache kept as arrays between calls.
Constrained output (a GBNF grammar or a JSON schema, as the API sends them for llama.cpp)
goes through llguidance, which works from the same tokenizer.json: it masks the logits before
the NumPy sampler draws. Embeddings are refused with the reason.
May import engine.messages, the worker's errors and sampling modules, appliance.onnx_layout,
numpy, onnxruntime, tokenizers and llguidance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from appliance.engine.messages import Load, Submit, TokenLogprob
from appliance.engine.worker.errors import LoadError, RequestRejected
from appliance.engine.worker.onnx_cache import PerSequenceKV, Run, SharedKV
from appliance.engine.worker.onnx_tokens import token_bytes
from appliance.engine.worker.sampling import NumpySampler, token_logprob
from appliance.onnx_layout import LayoutError, read_layout

PREFILL_CHUNK = 256
"""Most prompt tokens per run: builder graphs return logits for every position (vocab-wide)."""
_DEVICE_TYPES = {"CUDAExecutionProvider": "cuda", "CANNExecutionProvider": "cann"}


class OnnxBatch:
    """The batch the batcher fills (same fields as llama.cpp's `llama_batch`), in NumPy."""

    def __init__(self, capacity: int) -> None:
        self.token = np.zeros(capacity, dtype=np.int64)
        self.pos = np.zeros(capacity, dtype=np.int64)
        self.n_seq_id = np.zeros(capacity, dtype=np.int32)
        self.seq_id = np.zeros((capacity, 1), dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=bool)
        self.n_tokens = 0


class OnnxRuntime:
    """One decoder graph with `slots` sequences of `context_length` tokens each."""

    def __init__(self, request: Load, on_progress: Callable[[float], None] | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        started = time.monotonic()
        progress = on_progress or (lambda _: None)
        try:
            self.layout = layout = read_layout(_folder(request.model_path), check_operators=False)
        except LayoutError as error:
            raise LoadError(str(error)) from None
        progress(0.05)
        self.tokenizer = Tokenizer.from_file(str(layout.folder / "tokenizer.json"))
        self._pieces = token_bytes(layout.folder / "tokenizer.json", self.tokenizer)
        self.n_vocab = layout.vocab_size or self.tokenizer.get_vocab_size()
        self.eos = set(layout.eos_token_ids)
        self.bos = layout.bos_token_id
        trained = layout.context_length
        per_slot = request.context_length or trained or 4096
        self.context_length = min(per_slot, trained) if trained > 0 else per_slot
        self.slots = max(1, request.slots)
        self.batch_tokens = max(request.batch_tokens, self.slots)
        self.provider = request.provider or "CPUExecutionProvider"
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, request.threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = True
        options.log_severity_level = 3
        providers: list[object] = [(self.provider, dict(request.provider_options))]
        if self.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")  # for the few nodes a device lacks
        progress(0.1)
        try:
            self.session = ort.InferenceSession(str(layout.graph), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise LoadError(f"onnxruntime could not load {layout.graph}: {error}") from None
        progress(0.9)
        self.device_type = _DEVICE_TYPES.get(self.provider, "cpu")
        self.dtype = np.dtype(layout.kv_dtype)
        self.kv_names = layout.kv_names()
        self.lengths = [0] * self.slots
        """Valid KV positions of each sequence (positions beyond are free to overwrite)."""
        self._logits: dict[int, np.ndarray] = {}
        self._lltokenizer: object | None = None
        if layout.group_query_attention:
            self._kv: SharedKV | PerSequenceKV = SharedKV(ort, self, options)
        else:
            self._kv = PerSequenceKV(self)
        self.load_seconds = time.monotonic() - started
        progress(1.0)

    # --- tokens -------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        ids = list(self.tokenizer.encode(text, add_special_tokens=add_bos is not False).ids)
        if add_bos and self.bos is not None and (not ids or ids[0] != self.bos):
            ids.insert(0, self.bos)
        # Chat templates write the BOS text themselves; do not add a second one.
        while len(ids) > 1 and ids[0] == ids[1] == self.bos:
            ids.pop(0)
        return ids

    def piece(self, token: int) -> bytes:
        if 0 <= token < len(self._pieces):
            return self._pieces[token]
        return b""

    def is_end_of_generation(self, token: int) -> bool:
        return token in self.eos

    # --- KV cache -----------------------------------------------------------------------

    def forget(self, seq: int, start: int = 0) -> None:
        self.lengths[seq] = min(self.lengths[seq], start)

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        self._kv.copy(source, target, length)
        self.lengths[target] = length

    # --- sampling -----------------------------------------------------------------------

    def check_request(self, request: Submit) -> None:
        bad = [t for t in request.logit_bias if not 0 <= t < self.n_vocab]
        if bad:
            raise RequestRejected(
                f"logit_bias: token id {bad[0]} is not in this model's vocabulary "
                f"(ids 0 to {self.n_vocab - 1})"
            )
        if request.top_logprobs > self.n_vocab - 1:
            raise RequestRejected(f"top_logprobs: the vocabulary has only {self.n_vocab} tokens")

    def grammar_of(self, request: Submit) -> str | None:
        """The request's constraint as an llguidance grammar (its GBNF, or its JSON schema)."""
        if not (request.grammar or request.json_schema):
            return None
        import llguidance

        what = "grammar" if request.grammar else "JSON schema"
        try:
            if request.grammar:
                grammar = llguidance.grammar_from("gbnf", request.grammar)
            else:
                # Compact separators, no free whitespace: a model may otherwise fill the
                # answer with blank lines between keys (llama.cpp's converter caps it at 20).
                grammar = llguidance.LLMatcher.grammar_from_json_schema(
                    request.json_schema, defaults={"whitespace_flexible": False}
                )
        except Exception as error:  # the converters raise ValueError and friends
            raise RequestRejected(
                f"the {what} cannot be used to constrain the output ({error}); check it"
            ) from None
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self._guidance_tokenizer()
        )
        if failed:
            raise RequestRejected(
                f"the {what} cannot be used to constrain the output: {'; '.join(messages)}"
            )
        return grammar

    def _guidance_tokenizer(self) -> object:
        if self._lltokenizer is None:
            import llguidance

            text = (self.layout.folder / "tokenizer.json").read_text(encoding="utf-8")
            self._lltokenizer = llguidance.LLTokenizer(
                text, n_vocab=self.n_vocab, eos_token=sorted(self.eos) or None
            )
        return self._lltokenizer

    def new_sampler(self, request: Submit, choice: int, grammar: str | None = None) -> NumpySampler:
        self.check_request(request)
        sampler = NumpySampler(request, choice, self.context_length)
        if grammar:
            import llguidance

            matcher = llguidance.LLMatcher(self._guidance_tokenizer(), grammar, log_level=0)
            if matcher.is_error():
                raise RequestRejected(f"the output constraint failed: {matcher.get_error()}")
            sampler.matcher = matcher
        return sampler

    def sample(self, sampler: NumpySampler, batch_index: int) -> int:
        logits = self._logits[batch_index]
        matcher = sampler.matcher
        if matcher is not None:
            logits = np.where(self._allowed(matcher), logits, -np.inf)
            if not np.isfinite(logits).any():
                raise RequestRejected(
                    "the grammar or JSON schema allows no token at this point of the answer; "
                    "it may be unsatisfiable"
                )
        token = sampler.sample(logits)
        sampler.accept(token)
        if matcher is not None and not matcher.consume_token(token):
            raise RequestRejected(f"the output constraint failed: {matcher.get_error()}")
        return token

    def _allowed(self, matcher: object) -> np.ndarray:
        """llguidance's mask of the tokens allowed next, as booleans over the logits."""
        from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

        bitmask = allocate_token_bitmask(1, self.n_vocab)
        fill_next_token_bitmask(matcher, bitmask)  # type: ignore[arg-type]
        bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")
        return bits[: self.n_vocab].astype(bool)

    @staticmethod
    def accept(sampler: NumpySampler, token: int) -> None:
        """A token the batcher forced (never under a grammar: the batcher checks)."""
        sampler.accept(token)

    @staticmethod
    def free_sampler(sampler: NumpySampler) -> None:
        sampler.matcher = None

    def logprobs(self, batch_index: int, token: int, top: int) -> TokenLogprob:
        return token_logprob(self._logits[batch_index], token, top, self._text)

    def _text(self, token: int) -> str:
        return self.piece(token).decode(errors="replace")

    def logits_at(self, batch_index: int) -> np.ndarray:
        """The logits the last `decode` produced for one batch entry (tests compare them)."""
        return self._logits[batch_index]

    # --- decoding -----------------------------------------------------------------------

    def new_batch(self) -> OnnxBatch:
        return OnnxBatch(self.batch_tokens)

    def decode(self, batch: OnnxBatch) -> int:
        """Run the batch: 0 on success, 1 when a sequence would outgrow the cache."""
        runs: dict[int, Run] = {}
        for i in range(batch.n_tokens):
            seq = int(batch.seq_id[i][0])
            run = runs.get(seq)
            if run is None:
                run = runs[seq] = Run(seq, int(batch.pos[i]), [], None)
            run.tokens.append(int(batch.token[i]))
            if batch.logits[i]:
                run.output = i
        self._logits = {}
        for run in runs.values():
            if (
                run.start != self.lengths[run.seq]
                or run.start + len(run.tokens) > self.context_length
            ):
                return 1
        steps = [r for r in runs.values() if len(r.tokens) == 1]
        prompts = [r for r in runs.values() if len(r.tokens) > 1]
        for run in prompts:
            for at in range(0, len(run.tokens), PREFILL_CHUNK):
                chunk = run.tokens[at : at + PREFILL_CHUNK]
                last = at + len(chunk) >= len(run.tokens)
                part = Run(run.seq, run.start + at, chunk, run.output if last else None)
                self._run([part])
        if steps:
            self._run(steps)
        return 0

    def _run(self, runs: list[Run]) -> None:
        logits = self._kv.run(runs)
        for row, run in enumerate(runs):
            self.lengths[run.seq] = run.start + len(run.tokens)
            if run.output is not None:
                self._logits[run.output] = logits[row]

    def feeds(self, runs: list[Run], rows: Sequence[int]) -> dict[str, np.ndarray]:
        """input_ids, attention_mask (and position_ids) for `rows` (sequence ids, in order):
        the runs' tokens, and a dummy token for a row that is only there to keep rows
        contiguous (it writes past its sequence's valid length, where nothing is kept)."""
        width = max(len(r.tokens) for r in runs)
        by_seq = {r.seq: r for r in runs}
        ids = np.zeros((len(rows), width), dtype=np.int64)
        totals = []
        for row, seq in enumerate(rows):
            run = by_seq.get(seq)
            tokens = run.tokens if run else [0]
            ids[row, : len(tokens)] = tokens
            totals.append(self.lengths[seq] + len(tokens))
        mask = np.zeros((len(rows), max(totals)), dtype=np.int64)
        for row, total in enumerate(totals):
            mask[row, :total] = 1
        feeds = {self.layout.input_ids: ids, self.layout.attention_mask: mask}
        if self.layout.position_ids:
            starts = np.array([self.lengths[seq] for seq in rows], dtype=np.int64)
            feeds[self.layout.position_ids] = starts[:, None] + np.arange(width)[None, :]
        return feeds

    # --- embeddings and status ----------------------------------------------------------

    def embed_tokens(self, text: str) -> list[int]:
        raise RequestRejected(
            "this model runs on onnxruntime, which serves chat and completions only; use a "
            "GGUF model for embeddings"
        )

    def embed_chunk(self, tokens: Sequence[int], start: int) -> np.ndarray:
        raise RequestRejected("embeddings are not available for ONNX models")

    def system_info(self) -> str:
        import onnxruntime as ort

        kind = (
            "one batched run per step over a shared KV buffer (GroupQueryAttention)"
            if self.layout.group_query_attention
            else "one run per sequence"
        )
        return (
            f"onnxruntime {ort.__version__}, {self.session.get_providers()[0]}; "
            f"{self.layout.model_type}, {self.layout.layers} layers, KV {self.layout.kv_dtype}; "
            f"{kind}"
        )


def _folder(model_path: str) -> object:
    from pathlib import Path

    path = Path(model_path)
    return path if path.is_dir() else path.parent
