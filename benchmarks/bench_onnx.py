"""ONNX engine vs onnxruntime-genai: decode tokens/s on the CPU, 1 and 4 streams, and our
per-step overhead beyond `session.run`.

    .venv/bin/python benchmarks/bench_onnx.py [--tokens 64] [--threads 2] [--repeat 3]

Model: onnxruntime-genai's own builder output (int4 MatMulNBits, GroupQueryAttention) for a
random-weight Llama of 8 layers x 768 wide (12 query / 4 KV heads, ~50M parameters, the
tests' 278-token DeepSeek vocabulary), built once under .pytest_cache (tests/helpers).
Each side warms up once (untimed), then runs; medians of --repeat interleaved runs.
Ours: `OnnxRuntime` driven by the worker's `Batcher` in this process (no IPC), greedy; 4 streams
are 4 concurrent requests in 4 slots (one batched run per step). onnxruntime-genai: a
`Generator` with the same prompt, greedy, batch 1, or batch 4 for 4 streams. Both with the
same intra-op thread count. Times include the prompt (17 tokens). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from appliance.engine.messages import Load, Submit
from appliance.engine.worker.batcher import Batcher
from appliance.engine.worker.onnxrt import OnnxRuntime
from helpers.builder_onnx import builder_onnx_model
from helpers.deepseek_vocab import BOS

PROMPT = f"{BOS}<｜User｜>hello there, the answer<｜Assistant｜>"


def ours(folder: Path, streams: int, tokens: int, threads: int) -> tuple[float, float]:
    """(tokens/s, overhead fraction of step time spent outside session.run)."""
    rt = OnnxRuntime(Load(str(folder), 0, threads, slots=max(streams, 1), engine="onnxruntime"))
    rt.eos = set()  # a random model: run the full length every time
    inside = [0.0]
    session_run = rt.session.run_with_iobinding

    def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return session_run(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    rt.session.run_with_iobinding = timed  # type: ignore[method-assign]
    batcher = Batcher(rt, lambda message: None)
    batcher.submit(Submit("warm-up", "warm up", 4, temperature=0))  # first-run set-up, untimed
    while batcher.has_work():
        batcher.step()
    inside[0] = 0.0
    # Different prompts per stream, so no stream reuses another's prompt KV.
    for i in range(streams):
        batcher.submit(Submit(f"r{i}", PROMPT + "x" * i, tokens, temperature=0))
    started = time.perf_counter()
    while batcher.has_work():
        batcher.step()
    elapsed = time.perf_counter() - started
    return streams * tokens / elapsed, (elapsed - inside[0]) / elapsed


def genai(folder: Path, streams: int, tokens: int, threads: int) -> float:
    import onnxruntime_genai as og

    rt = OnnxRuntime(Load(str(folder), 0, 1, slots=1, engine="onnxruntime"))
    ids = rt.tokenize(PROMPT)
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(
        do_sample=False,
        max_length=len(ids) + tokens,
        min_length=len(ids) + tokens,
        batch_size=streams,
    )
    warm = og.Generator(model, params)  # first-run set-up, untimed
    warm.append_tokens(np.array([ids] * streams, dtype=np.int32))
    warm.generate_next_token()
    del warm
    generator = og.Generator(model, params)
    started = time.perf_counter()
    generator.append_tokens(np.array([ids] * streams, dtype=np.int32))
    produced = 0
    while not generator.is_done():
        generator.generate_next_token()
        produced += 1
    elapsed = time.perf_counter() - started
    return streams * produced / elapsed


def with_threads(folder: Path, threads: int, scratch: Path) -> Path:
    """A copy of the model whose genai_config.json sets the same thread count as ours."""
    copy = scratch / "model"
    shutil.copytree(folder, copy)
    path = copy / "genai_config.json"
    config = json.loads(path.read_text())
    config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = threads
    config["model"]["decoder"]["session_options"]["inter_op_num_threads"] = 1
    path.write_text(json.dumps(config))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    built = builder_onnx_model("bench")
    with tempfile.TemporaryDirectory() as scratch:
        folder = with_threads(built, args.threads, Path(scratch))
        print(
            "| streams | ours tok/s | onnxruntime-genai tok/s | ours / genai | our overhead beyond session.run |"
        )
        print("|---|---|---|---|---|")
        for streams in (1, 4):
            mine, overheads, theirs = [], [], []
            for _ in range(args.repeat):  # interleaved, so drift on a shared box hits both
                rate, overhead = ours(folder, streams, args.tokens, args.threads)
                mine.append(rate)
                overheads.append(overhead)
                theirs.append(genai(folder, streams, args.tokens, args.threads))
            a, b = statistics.median(mine), statistics.median(theirs)
            print(
                f"| {streams} | {a:.1f} | {b:.1f} | {a / b:.2f} | "
                f"{statistics.median(overheads) * 100:.1f}% of step time |"
            )


if __name__ == "__main__":
    main()
