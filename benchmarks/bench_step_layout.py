"""Decode-step time by which sequence ids a step holds, and in what order, in the worker's runtime.

With one KV stream per slot (as the worker and llama-server run), llama.cpp decodes a batch in
one pass only while each next sequence id is the last one's plus one; at every gap it starts
another pass over all the weights. This times one-token steps of N sequences on the worker's own
`LlamaRuntime` (same context parameters, no server) for several layouts, interleaved, and prints
the medians: what the batcher's placement (`_fitting`, `_close_gaps`) saves.

    .venv/bin/python benchmarks/bench_step_layout.py --reps 3 --steps 40
"""

from __future__ import annotations

import argparse
import statistics
import time

LAYOUTS = {
    "ids 0-7 (the batcher's layout)": list(range(8)),
    "ids 8-15": list(range(8, 16)),
    "ids 0-1 and 4-9 (one gap)": [0, 1, 4, 5, 6, 7, 8, 9],
    "even ids 0-14 (seven gaps)": list(range(0, 16, 2)),
    "ids 7 down to 0 (in reverse order)": list(range(7, -1, -1)),
    "id 0 alone": [0],
    "ids 0-15": list(range(16)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per layout and rep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="cells per slot")
    args = parser.parse_args()

    from appliance.config import load_config
    from appliance.engine.messages import Load
    from appliance.runtime import activate_in_process
    from appliance.store.embedded import embedded_model_path

    activate_in_process(load_config())  # the self-tested CPU variant the workers load
    from appliance.engine.worker.llamacpp import LlamaRuntime

    rt = LlamaRuntime(Load(str(embedded_model_path()), args.ctx, args.threads, slots=16))
    batch = rt.new_batch()
    prompt = rt.tokenize(
        "<|im_start|>user\nWhat is the capital of France? Tell me about it.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )

    def decode(items: list[tuple[int, list[int], int]]) -> float:
        count = 0
        for seq, tokens, start in items:
            for offset, token in enumerate(tokens):
                batch.token[count], batch.pos[count] = token, start + offset
                batch.n_seq_id[count], batch.seq_id[count][0] = 1, seq
                batch.logits[count] = True
                count += 1
        batch.n_tokens = count
        started = time.perf_counter()
        if rt.decode(batch) != 0:
            raise SystemExit("llama_decode failed")
        return time.perf_counter() - started

    def median_step_ms(seqs: list[int]) -> float:
        for seq in range(16):
            rt.forget(seq)
        for seq in seqs:
            decode([(seq, prompt, 0)])
        position, times = len(prompt), []
        for _ in range(args.steps):
            times.append(decode([(seq, [42], position) for seq in seqs]))
            position += 1
        return statistics.median(times) * 1000

    results: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for rep in range(args.reps):
        for name in LAYOUTS if rep % 2 == 0 else reversed(LAYOUTS):
            results[name].append(median_step_ms(LAYOUTS[name]))
    base = statistics.median(results[next(iter(LAYOUTS))])
    print(f"{args.steps} one-token steps per layout, {args.reps} interleaved reps, medians; "
          f"{args.threads} threads, 16 slots × {args.ctx} cells")  # fmt: skip
    print("| sequences in the step | ms per step | / ids 0-7 |\n|---|---:|---:|")
    for name, values in results.items():
        ms = statistics.median(values)
        print(f"| {name} | {ms:.1f} | {ms / base:.2f}× |")


if __name__ == "__main__":
    main()
