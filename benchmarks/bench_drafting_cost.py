"""What prompt-lookup drafting costs where it does not help: a story, drafting on vs off, in one process.

Two identical daemons (drafting off in both) compared against each other differ by 2-8% in a
sitting on the 2-vCPU VM, for reasons not found (not their start order, not the model file; see
RESULTS.md), which is more than what is measured here. So this runs the worker's own `Batcher` on two `LlamaRuntime`s in one
process, `engine.speculative_tokens` 8 and 0, and generates the same 128-token greedy story on
each in turn, the order alternating, and prints tok/s after the first token and the decode time
per token (what the guesses cost the model, apart from Python). That difference is within this
VM's noise, so it also counts what the guess steps cost directly: their time beyond a one-token
step, and the excess of the step after each (llama.cpp builds its graph again), as a share of
all decode time with drafting on.

    .venv/bin/python benchmarks/bench_drafting_cost.py --rounds 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench_engine import QUESTION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from appliance.config import load_config
    from appliance.engine.messages import Load, Submit
    from appliance.runtime import activate_in_process
    from appliance.store.embedded import embedded_model_path

    activate_in_process(load_config())  # the self-tested CPU variant the workers load
    from appliance.engine.worker.batcher import Batcher
    from appliance.engine.worker.llamacpp import LlamaRuntime

    model = str(embedded_model_path())
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    batchers = {}
    for name, guesses in (("drafting on", 8), ("drafting off", 0)):
        load = Load(model, 4096, args.threads, slots=16, draft_tokens=guesses)
        batchers[name] = Batcher(LlamaRuntime(load), lambda message: None)

    def story(name: str, round_no: int) -> tuple[float, float]:
        """tok/s after the first token, and decode ms per token."""
        batcher = batchers[name]
        batcher.submit(Submit(f"{name}-{round_no}", prompt, args.tokens, temperature=0))
        batcher.step()  # the prompt and the first token
        decode, decoding = batcher.rt.decode, 0.0

        def timed(batch: Any) -> int:
            nonlocal decoding
            started = time.perf_counter()
            result = decode(batch)
            seconds = time.perf_counter() - started
            decoding += seconds
            steps[name].append((batch.n_tokens, seconds))
            return result

        batcher.rt.decode = timed
        started, before = time.perf_counter(), batcher.generated_tokens
        while batcher.has_work():
            batcher.step()
        batcher.rt.decode = decode
        tokens = batcher.generated_tokens - before
        return tokens / (time.perf_counter() - started), decoding / tokens * 1000

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in batchers}
    steps: dict[str, list[tuple[int, float]]] = {name: [] for name in batchers}
    for round_no in range(args.rounds):
        order = list(batchers) if round_no % 2 == 0 else list(reversed(batchers))
        for name in order:
            results[name].append(story(name, round_no))
    on, off = results["drafting on"], results["drafting off"]
    ratios = [a[0] / b[0] for a, b in zip(on, off, strict=True)]
    drafting = batchers["drafting on"]
    print(f"{args.rounds} paired rounds, {args.tokens}-token greedy story, one process")
    print("| | tok/s | decode ms per token |\n|---|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(v[0] for v in values):.1f} | "
              f"{statistics.median(v[1] for v in values):.2f} |")  # fmt: skip
    print(f"on / off (median of paired rounds): {statistics.median(ratios):.3f}, "
          f"on faster in {sum(r > 1 for r in ratios)}/{len(ratios)}; guesses decoded "
          f"{drafting.draft_tokens}, kept {drafting.draft_accepted}")  # fmt: skip
    print(guess_cost(steps["drafting on"]))


def guess_cost(steps: list[tuple[int, float]]) -> str:
    """What the steps with guesses in them cost beyond one-token steps, and the step after each."""
    one_token = statistics.median(seconds for size, seconds in steps if size == 1)
    extra = 0.0
    for index, (size, seconds) in enumerate(steps):
        after_guesses = index > 0 and steps[index - 1][0] > 1
        if size > 1 or after_guesses:
            extra += max(0.0, seconds - one_token)
    total = sum(seconds for _, seconds in steps)
    guessed = sum(size > 1 for size, _ in steps)
    return (f"steps with guesses: {guessed} of {len(steps)}; they and the steps after them took "
            f"{extra * 1000:.0f} ms beyond one-token steps ({one_token * 1000:.2f} ms): "
            f"{extra / total:.2%} of {total:.1f} s of decoding")  # fmt: skip


if __name__ == "__main__":
    main()
