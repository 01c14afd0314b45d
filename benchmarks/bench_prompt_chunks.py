"""Cold prefill of one long prompt fed to llama.cpp in different chunk orders.

The worker feeds a prompt longer than a step in chunks of at most `engine.batch_tokens`. This
decodes the benchmark's ~1,100-token system prompt (a fresh nonce each time, so nothing is
cached) with the worker's context parameters, no server, in each chunking named on the command
line, interleaved and alternating, and prints per-chunk and total times; `--plot` draws them.

    .venv/bin/python benchmarks/bench_prompt_chunks.py --reps 6 512/512/r r/512/512 even

A chunking is `A/B/...` with `r` for the remainder of the prompt, or `even` (equal chunks).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench_engine import _QUIET, SYSTEM, require_plotting

HERE = Path(__file__).resolve().parent


def plan(spec: str, n_tokens: int, step: int) -> list[int]:
    """The chunk sizes of `spec` for a prompt of `n_tokens`."""
    if spec == "even":
        count = -(-n_tokens // step)
        return [n_tokens // count + (i < n_tokens % count) for i in range(count)]
    parts = spec.split("/")
    fixed = sum(int(p) for p in parts if p != "r")
    sizes = [n_tokens - fixed if p == "r" else int(p) for p in parts]
    if sum(sizes) != n_tokens or min(sizes) <= 0 or max(sizes) > step:
        raise SystemExit(f"{spec} does not split {n_tokens} tokens into chunks of 1..{step}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans", nargs="+", help="chunkings, e.g. 512/512/r r/512/512 even")
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--ctx", type=int, default=4096, help="cells per slot")
    parser.add_argument("--step", type=int, default=512, help="engine.batch_tokens")
    parser.add_argument("--plot", type=Path, help="write a bar chart here (PNG)")
    args = parser.parse_args()
    if args.plot:
        require_plotting()

    from appliance.config import load_config
    from appliance.runtime import activate_in_process
    from appliance.store.embedded import embedded_model_path

    activate_in_process(load_config())  # the self-tested CPU variant the workers load
    import llama_cpp as L

    L.llama_backend_init()
    L.llama_log_set(_QUIET, None)
    model = L.llama_model_load_from_file(
        str(embedded_model_path()).encode(), L.llama_model_default_params()
    )
    vocab = L.llama_model_get_vocab(model)
    params = L.llama_context_default_params()  # as appliance/engine/worker/llamacpp.py sets them
    params.n_ctx = args.ctx * args.slots
    params.n_batch = params.n_ubatch = args.step
    params.n_seq_max = args.slots
    params.kv_unified = False
    params.n_threads = params.n_threads_batch = args.threads
    ctx = L.llama_init_from_model(model, params)
    memory = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(args.step, 0, 1)

    def tokenize(text: str) -> list[int]:
        data = text.encode()
        buffer = (L.llama_token * (len(data) + 8))()
        count = L.llama_tokenize(vocab, data, len(data), buffer, len(data) + 8, True, True)
        return list(buffer[:count])

    def decode(tokens: list[int], start: int, last: bool) -> float:
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = last and i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        started = time.perf_counter()
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        return (time.perf_counter() - started) * 1000

    def prompt(nonce: str) -> list[int]:
        return tokenize(
            f"<|im_start|>system\nSession {nonce}. {SYSTEM}<|im_end|>\n"
            "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"
        )

    n_tokens = len(prompt("0-0000000000000000000"))
    plans = {spec: plan(spec, n_tokens, args.step) for spec in args.plans}
    decode(prompt("warm-up")[:8], 0, True)  # first-call setup, outside the timings
    L.llama_memory_seq_rm(memory, 0, -1, -1)
    times: dict[str, list[list[float]]] = {spec: [] for spec in plans}
    for rep in range(args.reps):
        for spec in args.plans if rep % 2 == 0 else args.plans[::-1]:
            tokens = prompt(f"{rep}-{time.time_ns()}")
            chunks, position = [], 0
            for size in plan(spec, len(tokens), args.step):
                piece = tokens[position : position + size]
                chunks.append(decode(piece, position, position + size == len(tokens)))
                position += size
            times[spec].append(chunks)
            L.llama_memory_seq_rm(memory, 0, -1, -1)

    print(f"{n_tokens}-token prompt, {args.reps} repetitions, medians")
    print("| chunks (tokens, in order) | ms per chunk | total, ms |\n|---|---|---:|")
    for spec, runs in times.items():
        per_chunk = [statistics.median(run[i] for run in runs) for i in range(len(plans[spec]))]
        total = statistics.median(sum(run) for run in runs)
        sizes = ", ".join(str(s) for s in plans[spec])
        print(f"| {sizes} | {' · '.join(f'{ms:,.0f}' for ms in per_chunk)} | "
              f"{total:,.0f} |")  # fmt: skip
    if args.plot:
        draw(plans, times, args.plot)


def draw(plans: dict[str, list[int]], times: dict[str, list[list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 0.7 * len(plans) + 1.5))
    for row, (spec, sizes) in enumerate(plans.items()):
        left = 0.0
        for i, size in enumerate(sizes):
            ms = statistics.median(run[i] for run in times[spec])
            colour = "tab:blue" if size == max(sizes) else "tab:orange"
            axes.barh(row, ms, left=left, color=colour, edgecolor="white")
            axes.text(left + ms / 2, row, str(size), ha="center", va="center", fontsize=8)
            left += ms
        total = statistics.median(sum(run) for run in times[spec])  # as the table has it
        axes.text(left + 30, row, f"{total:,.0f} ms", va="center", fontsize=8)
    axes.set_yticks(range(len(plans)), [" + ".join(map(str, s)) for s in plans.values()])
    axes.set_xlim(0, axes.get_xlim()[1] * 1.12)  # room for the totals
    axes.set_xlabel("cold prefill, ms (each bar a chunk, labelled with its tokens)")
    axes.set_title("One long prompt, different chunk orders")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
