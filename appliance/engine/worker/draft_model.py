"""Drafting with a second, smaller model of the same vocabulary (speculative decoding).

Owns the draft model's native handles in the worker: its weights, one context with a few KV
streams (`DRAFT_STREAMS`: the batcher asks for guesses only while that few sequences generate),
which slot each stream serves and which tokens it holds. Asked for guesses, it gives each asking
slot a stream (its own, else the least recently used free one), catches the stream up with the
tokens the main model has accepted (dropping the positions that no longer match: rejected
guesses, another conversation), then decodes greedily, all asking sequences together in one
decode per drafted position.

A stream holds a conversation from at most `WINDOW` tokens before the point where it started
drafting (or fell that far behind), not from its start: catching up a long prompt would cost
the draft model a prefill of it, paid during generation, while the next few tokens depend
mostly on the last few hundred. The guesses go to
the batcher's verify path, which keeps only tokens the main model itself samples, so what the
draft model says changes the speed, never the answer.

A guess stops early when the draft model is unsure of it (its top token under `P_MIN`): a
token it barely prefers is rarely the main model's, and each further guess costs a decode.
Catching up is chunked (`CATCH_UP_TOKENS` per step) so a long prompt never stalls the streams.
May import the worker's errors and speculation modules only (plus llama_cpp, numpy).
"""

from __future__ import annotations

import time

import llama_cpp as L
import numpy as np

from appliance.engine.worker.errors import LoadError
from appliance.engine.worker.speculation import DRAFT_STREAMS

P_MIN = 0.5
"""Least probability the draft model must give its top token for a second or later guess."""
CATCH_UP_TOKENS = 128
"""Most tokens fed to the draft model per step to catch its streams up (prompts, lookup runs)."""
WINDOW = 256
"""Most tokens of a conversation a stream starts (or restarts) from: the last ones."""


class DraftModel:
    """A loaded draft model and the KV streams the slots take turns on."""

    def __init__(
        self, path: str, *, slots: int, context_length: int, threads: int, gpu_layers: int,
        main_vocab: int,
    ) -> None:  # fmt: skip
        started = time.monotonic()
        model_params = L.llama_model_default_params()
        model_params.n_gpu_layers = gpu_layers
        model_params.split_mode = L.LLAMA_SPLIT_MODE_NONE
        model_params.main_gpu = 0
        self.model = L.llama_model_load_from_file(path.encode(), model_params)
        if not self.model:
            raise LoadError(f"llama.cpp could not load the draft model {path} (see the log above)")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        # Guesses must be tokens of the main model: ids past its vocabulary (padding rows of a
        # larger table) end a draft.
        self.main_vocab = main_vocab
        self.context_length = context_length
        self.streams = max(1, min(slots, DRAFT_STREAMS))
        self.batch_tokens = CATCH_UP_TOKENS
        params = L.llama_context_default_params()
        params.n_ctx = context_length * self.streams
        params.n_batch = params.n_ubatch = self.batch_tokens
        params.n_seq_max = self.streams
        params.kv_unified = False  # a stream per sequence, as in the main context
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, params)
        if not self.ctx:
            L.llama_model_free(self.model)
            raise LoadError(
                f"llama.cpp could not create the draft model's context of {params.n_ctx} tokens "
                f'({self.streams} streams × {context_length}); set engine.draft_model = "off", '
                "or lower engine.context_length"
            )
        self.memory = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(self.batch_tokens, 0, self.streams)
        self.held: list[list[int]] = [[] for _ in range(self.streams)]
        """Tokens whose KV each stream holds, in position order."""
        self.owner: list[int | None] = [None] * self.streams
        """The slot each stream last served."""
        self.start: list[int] = [0] * self.streams
        """Where in its conversation each stream starts (its position 0)."""
        self.used: list[int] = [0] * self.streams
        self.calls = 0
        self.load_seconds = time.monotonic() - started

    def draft(self, wants: list[tuple[int, list[int], int]]) -> dict[int, list[int]]:
        """Guesses for sequences: `wants` holds (slot, the tokens it has accepted, the last one
        sampled included, most guesses); the answer is keyed by slot. A sequence still catching
        up gets none this step, nor do those beyond `DRAFT_STREAMS`."""
        streams = self._assign([(slot, tokens) for slot, tokens, _ in wants])
        by_stream = [
            (streams[slot], tokens, limit) for slot, tokens, limit in wants if slot in streams
        ]
        slot_of = {stream: slot for slot, stream in streams.items()}
        return {slot_of[stream]: guess for stream, guess in self._draft(by_stream).items()}

    def _assign(self, wants: list[tuple[int, list[int]]]) -> dict[int, int]:
        """A stream for each asking slot (slot -> stream): the one it had, else the least
        recently used stream no other asking slot has."""
        self.calls += 1
        assigned: dict[int, int] = {}
        for slot, _ in wants:
            if slot in self.owner:
                assigned[slot] = self.owner.index(slot)
        taken = set(assigned.values())
        for slot, _ in wants:
            if slot in assigned:
                continue
            free = [s for s in range(self.streams) if s not in taken]
            if not free:
                break
            best = min(free, key=lambda s: self.used[s])
            self.owner[best] = slot
            assigned[slot] = best
            taken.add(best)
        for stream in taken:
            self.used[stream] = self.calls
        return assigned

    def _draft(self, wants: list[tuple[int, list[int], int]]) -> dict[int, list[int]]:
        """Guesses for `wants` given by stream, keyed by stream."""
        asking = self._catch_up(wants)
        if not asking:
            return {}
        drafts: dict[int, list[int]] = {}
        going: list[tuple[int, int]] = []
        for seq, index, limit in asking:
            token, _ = self._best(index)
            if self._usable(token):
                drafts[seq] = [token]
                if limit > 1:
                    going.append((seq, limit))
        while going:
            batch = self.batch
            for i, (seq, _) in enumerate(going):
                token = drafts[seq][-1]
                self._put(i, token, len(self.held[seq]), seq, logits=True)
                self.held[seq].append(token)
            batch.n_tokens = len(going)
            if L.llama_decode(self.ctx, batch) != 0:
                self._reset()
                return drafts
            still = []
            for i, (seq, limit) in enumerate(going):
                token, p = self._best(i)
                if p < P_MIN or not self._usable(token):
                    continue
                drafts[seq].append(token)
                if len(drafts[seq]) < limit:
                    still.append((seq, limit))
            going = still
        return drafts

    def _catch_up(self, wants: list[tuple[int, list[int], int]]) -> list[tuple[int, int, int]]:
        """Feed each stream what it lacks (up to the step's budget); return (slot, batch index
        of its last token's logits, most guesses) for the streams that are caught up."""
        count = 0
        asking: list[tuple[int, int, int]] = []
        for seq, tokens, limit in wants:
            held = self.held[seq]
            view = tokens[self.start[seq] :]
            keep = _common_prefix(held, view) if held else 0
            if keep == 0 or len(view) - keep > WINDOW:
                # Another conversation, or this one ran far ahead (prompt lookup guessed a long
                # stretch): start over from its last WINDOW tokens.
                self.start[seq] = max(0, len(tokens) - WINDOW)
                view, keep = tokens[self.start[seq] :], 0
            if limit < 1 or len(view) + limit > self.context_length:
                continue
            keep = min(keep, len(view) - 1)
            if keep < len(held):
                L.llama_memory_seq_rm(self.memory, seq, keep, -1)
                del held[keep:]
            feed = view[keep:]
            if any(not 0 <= t < self.n_vocab for t in feed):
                continue  # a token the draft model does not have: it cannot follow this one
            room = self.batch_tokens - count
            if room <= 0:
                break
            take = feed[:room]
            for offset, token in enumerate(take):
                self._put(count, token, len(held) + offset, seq, logits=False)
                count += 1
            held.extend(take)
            if len(take) == len(feed):
                self.batch.logits[count - 1] = True
                asking.append((seq, count - 1, limit))
        if count == 0:
            return []
        self.batch.n_tokens = count
        if L.llama_decode(self.ctx, self.batch) != 0:
            self._reset()
            return []
        return asking

    def _put(self, index: int, token: int, position: int, seq: int, *, logits: bool) -> None:
        batch = self.batch
        batch.token[index] = token
        batch.pos[index] = position
        batch.n_seq_id[index] = 1
        batch.seq_id[index][0] = seq
        batch.logits[index] = logits

    def _best(self, index: int) -> tuple[int, float]:
        """The draft model's top token at a batch position, and its probability."""
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, index), (self.n_vocab,))
        token = int(logits.argmax())
        return token, float(1.0 / np.exp(logits - logits[token]).sum())

    def _usable(self, token: int) -> bool:
        return token < self.main_vocab and not L.llama_vocab_is_eog(self.vocab, token)

    def _reset(self) -> None:
        """After a failed decode the streams' contents are in doubt: start them over."""
        L.llama_memory_clear(self.memory, True)
        self.held = [[] for _ in range(self.streams)]

    def free(self) -> None:
        L.llama_batch_free(self.batch)
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)


def _common_prefix(held: list[int], tokens: list[int]) -> int:
    """Length of the common start of two token lists; list compares (in C) first, since the
    usual case is `held` a prefix of `tokens` but for the last few guesses."""
    size = min(len(held), len(tokens))
    if held[:size] == tokens[:size]:
        return size
    low = max(0, size - 64)
    start = low if held[:low] == tokens[:low] else 0
    i = start
    while i < size and held[i] == tokens[i]:
        i += 1
    return i


__all__ = ["DraftModel"]
