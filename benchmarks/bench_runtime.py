"""Portable runtime vs a native build: does the self-tested CPU variant cost speed?

The appliance ships one llama.cpp build with every CPU variant and loads the variant its
self-test chose (appliance/runtime). This compares it, through the real engine worker (the
same batcher, slots and threads), with a `-march=native` build of the same source
(benchmarks/build-native-llama.sh; on a CPU whose AMX faults, native minus AMX). Both workers
are loaded once; rounds alternate which goes first, so drift on a noisy VM hits both alike.
Greedy, end-of-text banned so every stream makes exactly --max-tokens tokens.

    benchmarks/build-native-llama.sh 0.3.36 ~/.cache/ai-appliance/bench-native-0.3.36
    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_runtime.py --native ~/.cache/ai-appliance/bench-native-0.3.36

Prints a table, appends it to benchmarks/RESULTS.md and draws benchmarks/runtime.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from bench_engine import require_plotting  # this folder is the script's sys.path[0]

from appliance.config import load_config
from appliance.devices.runtimes import probe_runtimes
from appliance.engine.client import WorkerProcess
from appliance.engine.messages import Done, Load, Submit
from appliance.store.embedded import embedded_model_path

HERE = Path(__file__).parent
PROMPT = (
    "<|im_start|>user\nWrite a detailed story about a lighthouse keeper and a storm.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
NO_END = {0: -100.0, 2: -100.0}  # SmolLM2's <|endoftext|> and <|im_end|>


async def measure(
    worker: WorkerProcess, streams: int, max_tokens: int, tag: str
) -> tuple[float, float]:
    """(aggregate tok/s of wall time, tokens per CPU-second of the worker process).

    CPU time barely moves when other processes share the cores, so on a busy machine the second
    figure still compares the two builds' kernels fairly (OMP_WAIT_POLICY=passive keeps idle
    threads from spinning, which would otherwise count as work)."""
    import psutil

    process = psutil.Process(worker.pid)
    cpu_before = sum(process.cpu_times()[:2])
    wall = await aggregate_tps(worker, streams, max_tokens, tag)
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    return wall, streams * max_tokens / cpu if cpu > 0 else float("nan")


async def aggregate_tps(worker: WorkerProcess, streams: int, max_tokens: int, tag: str) -> float:
    async def one(index: int) -> int:
        submit = Submit(f"{tag}-{index}", PROMPT, max_tokens=max_tokens, temperature=0.0,
                        logit_bias=NO_END)  # fmt: skip
        tokens = 0
        async for message in worker.generate(submit):
            if isinstance(message, Done):
                tokens = message.completion_tokens
        return tokens

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(streams)))
    return sum(counts) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", type=Path, required=True, help="native build's lib folder")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    require_plotting()
    report = probe_runtimes(load_config())
    assert report.llama_cpp_dir and report.cpu_variant and report.cpu_variant.variant, report
    model = embedded_model_path()
    builds = {
        f"portable ({report.cpu_variant.variant})": Load(
            str(model), 1024, args.threads, slots=8, runtime_dir=report.llama_cpp_dir,
            backend_libs=[report.cpu_variant.path],
        ),
        "native": Load(str(model), 1024, args.threads, slots=8, runtime_dir=str(args.native)),
    }  # fmt: skip
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    workers = {}
    for name, load in builds.items():
        workers[name] = WorkerProcess(name)
        await workers[name].start(load, 300)
    results: dict[tuple[str, int], list[float]] = {}
    cpu_results: dict[tuple[str, int], list[float]] = {}
    names = list(builds)
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for streams in (1, 8):
            for name in order:
                tps, per_cpu = await measure(workers[name], streams, args.max_tokens, f"r{round_}")
                results.setdefault((name, streams), []).append(tps)
                cpu_results.setdefault((name, streams), []).append(per_cpu)
                print(
                    f"round {round_ + 1}: {name:24} {streams} stream(s): {tps:6.1f} tok/s, "
                    f"{per_cpu:6.1f} tok per CPU-s",
                    flush=True,
                )
    for worker in workers.values():
        await worker.stop()
    write_results(results, cpu_results, names, args, report.cpu_variant.variant)


def _paired(results, names, streams) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    ours, theirs = results[(names[0], streams)], results[(names[1], streams)]
    paired = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
    return statistics.median(ours), statistics.median(theirs), paired


def write_results(results, cpu_results, names, args, variant) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for streams in (1, 8):
        ours, theirs, paired = _paired(results, names, streams)
        cpu_ours, cpu_theirs, cpu_paired = _paired(cpu_results, names, streams)
        rows.append(
            f"| {streams} | {ours:.1f} | {theirs:.1f} | {paired:.3f}× | {cpu_ours:.1f} "
            f"| {cpu_theirs:.1f} | {cpu_paired:.3f}× | {'yes' if cpu_paired >= 0.97 else 'NO'} |"
        )
    table = "\n".join(
        [
            f"### Portable runtime ({variant}, self-tested) vs native build — "
            f"{time.strftime('%Y-%m-%d')}",
            "",
            f"SmolLM2-135M-Instruct Q4_1, {args.threads} threads, 8 slots, {args.max_tokens} "
            f"greedy tokens per stream, {args.rounds} interleaved rounds, through the engine "
            "worker. Command: `.venv/bin/python benchmarks/bench_runtime.py --native DIR`.",
            "",
            "| streams | portable tok/s | native tok/s | wall ratio (paired median) "
            "| portable tok/CPU-s | native tok/CPU-s | CPU ratio (paired median) | within 3%? |",
            "|---:|---:|---:|---:|---:|---:|---:|:---:|",
            *rows,
            "",
        ]
    )
    print("\n" + table)
    with (HERE / "RESULTS.md").open("a") as results_file:
        results_file.write("\n" + table)
    plot(results, names, args)


def plot(results, names, args) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, streams in zip(axes, (1, 8), strict=True):
        for offset, name in enumerate(names):
            values = results[(name, streams)]
            axis.bar(offset, statistics.median(values), color=f"C{offset}", alpha=0.6, label=name)
            axis.plot([offset] * len(values), values, "k.", markersize=5)
        axis.set_xticks(range(len(names)), names, fontsize=8)
        axis.set_title(f"{streams} stream(s), aggregate tok/s")
    axes[0].set_ylabel("tokens / s (bars: median, dots: rounds)")
    figure.suptitle(f"SmolLM2 Q4_1, {args.threads} threads: portable runtime vs native build")
    figure.tight_layout()
    figure.savefig(HERE / "runtime.png", dpi=110)


if __name__ == "__main__":
    asyncio.run(main())
