"""The CPU variant self-test's child process: `python -m appliance.runtime.selftest`.

Two commands, each printing one JSON object on stdout:
- `scores --lib-dir D`: ggml's CPUID score of every CPU variant in the build (feature detection
  only; no kernel runs).
- `run --lib-dir D --backend F --model M --out X --threads N`: register exactly that variant,
  decode the self-test model (a 48-token prompt batch, then 32 single tokens, fixed tokens
  rather than sampled ones so every variant sees the same input), save all logits to X (.npy),
  then time a few rounds. A variant whose code cannot run here dies in this process (SIGILL,
  SIGSEGV, abort), which the parent reports; this process never catches such deaths.

May import appliance.runtime.loader, numpy and llama_cpp (after activation) only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from pathlib import Path

import numpy as np

from appliance.runtime.loader import activate, backend_score

PROMPT_TOKENS = 48
DECODE_TOKENS = 32
TIMED_ROUNDS = 5


def scores(lib_dir: Path) -> dict[str, int]:
    return {
        path.name.removeprefix("libggml-cpu-").removesuffix(".so"): backend_score(str(path))
        for path in sorted(lib_dir.glob("libggml-cpu-*.so"))
    }


def _fixed_tokens(count: int, n_vocab: int) -> list[int]:
    return [(17 + 37 * i) % (n_vocab - 2) for i in range(count)]  # skip BOS/EOS at the end


def run(
    lib_dir: Path, backend: Path, model_path: Path, out: Path, threads: int
) -> dict[str, object]:
    activate(str(lib_dir), [str(backend)])
    import llama_cpp as L  # after activate: its libraries come from lib_dir

    quiet = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(
        lambda level, text, _: None
    )
    L.llama_log_set(quiet, None)  # `quiet` stays referenced until the end of this function
    L.llama_backend_init()
    params = L.llama_model_default_params()
    params.n_gpu_layers = 0
    model = L.llama_model_load_from_file(str(model_path).encode(), params)
    if not model:
        raise SystemExit("llama.cpp could not load the self-test model")
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    cparams = L.llama_context_default_params()
    cparams.n_ctx = 256
    cparams.n_batch = cparams.n_ubatch = 64
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.no_perf = True
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        raise SystemExit("llama.cpp could not create a context for the self-test")
    memory = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(64, 0, 1)
    tokens = _fixed_tokens(PROMPT_TOKENS + DECODE_TOKENS, n_vocab)

    def decode(start: int, count: int, all_logits: bool) -> None:
        batch.n_tokens = count
        for i in range(count):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tokens[start + i], start + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = all_logits or i == count - 1
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed in the self-test")

    def logits_of(index: int) -> np.ndarray:
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, index), (n_vocab,)).copy()

    # Correctness: every prompt position (the batched path) and every single-token step.
    decode(0, PROMPT_TOKENS, all_logits=True)
    rows = [logits_of(i) for i in range(PROMPT_TOKENS)]
    for step in range(DECODE_TOKENS):
        decode(PROMPT_TOKENS + step, 1, all_logits=True)
        rows.append(logits_of(0))
    np.save(out, np.stack(rows))
    # Speed: best of a few rounds, so one noisy moment does not decide.
    best_prompt = best_decode = float("inf")
    for _ in range(TIMED_ROUNDS):
        L.llama_memory_clear(memory, True)
        started = time.perf_counter()
        decode(0, PROMPT_TOKENS, all_logits=False)
        prompted = time.perf_counter()
        for step in range(DECODE_TOKENS):
            decode(PROMPT_TOKENS + step, 1, all_logits=False)
        finished = time.perf_counter()
        best_prompt = min(best_prompt, prompted - started)
        best_decode = min(best_decode, finished - prompted)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return {
        "prompt_tok_s": round(PROMPT_TOKENS / best_prompt, 1),
        "decode_tok_s": round(DECODE_TOKENS / best_decode, 1),
        "seconds": round(best_prompt + best_decode, 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.runtime.selftest")
    commands = parser.add_subparsers(dest="command", required=True)
    score_cmd = commands.add_parser("scores")
    score_cmd.add_argument("--lib-dir", type=Path, required=True)
    run_cmd = commands.add_parser("run")
    run_cmd.add_argument("--lib-dir", type=Path, required=True)
    run_cmd.add_argument("--backend", type=Path, required=True)
    run_cmd.add_argument("--model", type=Path, required=True)
    run_cmd.add_argument("--out", type=Path, required=True)
    run_cmd.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "scores":
        result: dict[str, object] = {"scores": scores(args.lib_dir)}
    else:
        result = run(args.lib_dir, args.backend, args.model, args.out, args.threads)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
