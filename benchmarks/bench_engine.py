"""Engine throughput and latency: raw llama.cpp ceiling vs. our API vs. llama-cpp-python's server.

One run, one model, the same threads for all three, so the figures compare side by side:

(a) raw in-process batched decode with llama-cpp-python's low-level API (the ceiling),
(b) the appliance's HTTP API (`appliance serve`) with 1, 2, 4, 8, 16 concurrent streaming clients,
(c) `python -m llama_cpp.server` with the same clients,

plus cold vs. warm time-to-first-token for a ~1,000-token shared system prompt. Prints a table,
appends it to benchmarks/RESULTS.md and draws benchmarks/engine.png.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_engine.py            # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).parent
QUESTION = "Write a detailed story about a lighthouse keeper and a storm."
SYSTEM = (
    "You are the assistant of ACME Corporation's office. Follow the staff handbook: "
    + " ".join(
        f"Rule {i}: be polite, precise and brief when answering colleague {i}." for i in range(60)
    )
)


RUN_WITH_RUNTIME = (
    "import runpy, sys; from appliance.config import load_config; "
    "from appliance.runtime import activate_in_process; activate_in_process(load_config()); "
    "module = sys.argv.pop(1); runpy.run_module(module, run_name='__main__', alter_sys=True)"
)
"""Runs a module (argv[1]) after activating the appliance's llama.cpp runtime in its process."""


@dataclass
class Run:
    clients: int
    aggregate_tps: float
    per_stream_tps: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    tokens: int
    failed: int = 0
    """Streams the server broke off or refused."""


# --- (a) the ceiling: raw batched decode ---------------------------------------------------

# Kept at module level: llama.cpp holds only a pointer to the callback.
_QUIET = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda *_: None)


def raw_decode_tps(
    model: Path, threads: int, sequences: int, steps: int, question: str = QUESTION
) -> float:
    """Tokens per second of plain greedy batched decoding, no server, no Python per request,
    after the chat prompt of `question` (a long one makes each step attend over more)."""
    from appliance.chat_template import render_chat
    from appliance.config import load_config
    from appliance.runtime import activate_in_process
    from appliance.store.gguf_meta import read_gguf_metadata

    activate_in_process(load_config())  # the same self-tested CPU variant the workers load
    import llama_cpp as L

    L.llama_backend_init()
    L.llama_log_set(_QUIET, None)
    mparams = L.llama_model_default_params()
    llm = L.llama_model_load_from_file(str(model).encode(), mparams)
    vocab = L.llama_model_get_vocab(llm)
    # The prompt the servers decode: the model's own chat template, as the daemon renders it.
    meta = read_gguf_metadata(model)
    prompt = render_chat(meta.chat_template, [{"role": "user", "content": question}]).encode()
    tokens = (L.llama_token * 4096)()
    n_prompt = L.llama_tokenize(vocab, prompt, len(prompt), tokens, 4096, False, True)
    assert n_prompt > 0, "the prompt does not fit in 4,096 tokens"
    n_batch = max(512, n_prompt)  # the whole prompt in one decode
    cparams = L.llama_context_default_params()
    cparams.n_ctx = sequences * max(512, n_prompt + steps + 8)
    cparams.n_batch = cparams.n_ubatch = n_batch
    cparams.n_seq_max = sequences
    cparams.kv_unified = True
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = L.llama_init_from_model(llm, cparams)
    batch = L.llama_batch_init(n_batch, 0, sequences)
    for i in range(n_prompt):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = tokens[i], i, sequences
        for s in range(sequences):
            batch.seq_id[i][s] = s
        batch.logits[i] = i == n_prompt - 1
    batch.n_tokens = n_prompt
    L.llama_decode(ctx, batch)
    samplers = [L.llama_sampler_init_greedy() for _ in range(sequences)]
    rows = [n_prompt - 1] * sequences
    started = time.perf_counter()
    for step in range(steps):
        for s in range(sequences):
            token = L.llama_sampler_sample(samplers[s], ctx, rows[s])
            batch.token[s], batch.pos[s], batch.n_seq_id[s] = token, n_prompt + step, 1
            batch.seq_id[s][0] = s
            batch.logits[s] = True
        batch.n_tokens = sequences
        L.llama_decode(ctx, batch)
        rows = list(range(sequences))
    elapsed = time.perf_counter() - started
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(llm)
    return sequences * steps / elapsed


# --- (b), (c): servers driven by streaming clients ---------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({process.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server at {url} never became ready")


def start_appliance(
    model: Path, threads: int, home: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(
        APPLIANCE_HOME=str(home), APPLIANCE_LISTEN=f"127.0.0.1:{port}",
        APPLIANCE_ENGINE__THREADS=str(threads), APPLIANCE_ENGINE__SLOTS="16",
        APPLIANCE_ENGINE__CONTEXT_LENGTH="2048", APPLIANCE_API__REQUIRE_API_KEY="false",
    )  # fmt: skip
    appliance = [sys.executable, "-m", "appliance"]
    subprocess.run([*appliance, "models", "import", str(model), "--name", "bench"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    process = subprocess.Popen(
        [*appliance, "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(home / "daemon.log", "wb"),  # noqa: SIM115 (open while the server runs)
    )
    wait_ready(f"http://127.0.0.1:{port}/ready", process)
    return process, f"http://127.0.0.1:{port}/v1", "bench"


def start_llama_cpp_server(model: Path, threads: int) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    process = subprocess.Popen(
        # llama-cpp-python's server on the same runtime build and self-tested CPU variant.
        [sys.executable, "-c", RUN_WITH_RUNTIME, "llama_cpp.server", "--model", str(model),
         "--n_threads",
         str(threads), "--n_ctx", "2048", "--port", str(port), "--host", "127.0.0.1",
         # Its default (True) aborts a running stream when the next request arrives; queueing
         # them is the fair comparison.
         "--interrupt_requests", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}/v1/models", process)
    return process, f"http://127.0.0.1:{port}/v1", str(model)


async def one_stream(
    client: httpx.AsyncClient,
    base: str,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
) -> tuple[float, float, int]:
    """(time to first token, time of last token, tokens) for one streamed chat request.

    A chunk is not always one token (a server may send accepted guesses, or a fast stream's
    tokens, several to a chunk): the count is the usage chunk's where the server sends one,
    else one per chunk with content."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True,
            "temperature": 0, "stream_options": {"include_usage": True}}  # fmt: skip
    sent = time.perf_counter()
    first = last = 0.0
    chunks = 0
    usage = None
    async with client.stream("POST", f"{base}/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                usage = chunk["usage"].get("completion_tokens")
            choices = chunk.get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                chunks += 1
                last = time.perf_counter()
                first = first or last
    return first - sent, last - sent, chunks if usage is None else usage


async def load_test(base: str, model: str, clients: int, max_tokens: int) -> Run:
    messages = [{"role": "user", "content": QUESTION}]
    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(one_stream(client, base, model, messages, max_tokens) for _ in range(clients)),
            return_exceptions=True,
        )
        wall = time.perf_counter() - started
    results = [r for r in outcomes if not isinstance(r, BaseException)]
    failed = clients - len(results)
    if not results:
        return Run(clients, 0.0, 0.0, float("nan"), float("nan"), 0, failed)
    ttfts = sorted(r[0] for r in results)
    tokens = sum(r[2] for r in results)
    per_stream = [r[2] / (r[1] - r[0]) for r in results if r[1] > r[0] and r[2] > 1] or [0.0]
    p95 = ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))]
    return Run(clients, tokens / wall, statistics.mean(per_stream), statistics.median(ttfts) * 1000,
               p95 * 1000, tokens, failed)  # fmt: skip


async def prefix_ttft(base: str, model: str) -> tuple[float, float]:
    """TTFT of a request with the long system prompt, cold then warm (same prompt, new question)."""
    async with httpx.AsyncClient(timeout=600) as client:
        await one_stream(client, base, model, [{"role": "user", "content": "Hello!"}], 4)
        cold = await one_stream(
            client,
            base,
            model,
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Who are you?"}],
            4,
        )
        warm = await one_stream(
            client,
            base,
            model,
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What do you do?"}],
            4,
        )
    return cold[0] * 1000, warm[0] * 1000


def median_run(runs: list[Run]) -> Run:
    """The round with the median aggregate throughput."""
    ordered = sorted(runs, key=lambda r: r.aggregate_tps)
    return ordered[len(ordered) // 2]


def raw_in_subprocess(
    args: argparse.Namespace, sequences: int, question: str = QUESTION, steps: int = 0
) -> float:
    """The ceiling, measured in a fresh process (like the servers' workers)."""
    output = subprocess.run(
        [sys.executable, __file__, "--model", str(args.model), "--threads", str(args.threads),
         "--max-tokens", str(steps or args.max_tokens), "--raw-only", str(sequences),
         "--raw-question", question],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(output.strip().splitlines()[-1])


# --- report --------------------------------------------------------------------------------------


def table(title: str, runs: list[Run]) -> str:
    lines = [f"**{title}**", "", "| clients | aggregate tok/s | per-stream tok/s | TTFT p50 ms | TTFT p95 ms | failed |",
             "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in runs:
        lines.append(f"| {r.clients} | {r.aggregate_tps:.1f} | {r.per_stream_tps:.1f} | "
                     f"{r.ttft_p50_ms:.0f} | {r.ttft_p95_ms:.0f} | {r.failed} |")  # fmt: skip
    return "\n".join(lines)


def require_plotting() -> None:
    """Stop at once, not after the measuring, when the plots could not be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("benchmarks draw plots with matplotlib: .venv/bin/pip install -e '.[bench]'")


def plot(ours: list[Run], theirs: list[Run], ceilings: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [r.clients for r in ours]
    left.plot(xs, [r.aggregate_tps for r in ours], "o-", label="appliance API")
    left.plot(xs, [r.aggregate_tps for r in theirs], "s-", label="llama_cpp.server")
    left.plot(list(ceilings), list(ceilings.values()), "k--", label="raw batched decode (ceiling)")
    left.set(xscale="log", xlabel="concurrent streaming clients", ylabel="aggregate tokens/s",
             title="Throughput")  # fmt: skip
    left.set_xticks(xs, [str(x) for x in xs])
    left.legend()
    right.plot(xs, [r.ttft_p50_ms for r in ours], "o-", label="appliance API p50")
    right.plot(xs, [r.ttft_p50_ms for r in theirs], "s-", label="llama_cpp.server p50")
    right.set(xscale="log", yscale="log", xlabel="concurrent streaming clients",
              ylabel="time to first token (ms)", title="Latency")  # fmt: skip
    right.set_xticks(xs, [str(x) for x in xs])
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: embedded SmolLM2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", default="1,2,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=HERE / "engine.png")
    parser.add_argument("--rounds", type=int, default=5, help="repeats per point; median kept")
    parser.add_argument("--raw-only", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--raw-question", default=QUESTION, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from appliance.store.embedded import embedded_model_path

        args.model = embedded_model_path()
    if args.raw_only:
        print(raw_decode_tps(args.model, args.threads, args.raw_only, args.max_tokens,
                             args.raw_question))  # fmt: skip
        return
    require_plotting()  # not in the raw-ceiling subprocess above: it draws nothing
    clients = [int(c) for c in args.clients.split(",")]

    # Both servers stay up and every point is measured raw → ours → theirs in turn, round
    # after round: this VM's speed drifts by tens of percent, and interleaving spreads the
    # drift evenly instead of handing it to whichever side ran last.
    with tempfile.TemporaryDirectory() as home:
        servers = [start_appliance(args.model, args.threads, Path(home))]
        try:
            servers.append(start_llama_cpp_server(args.model, args.threads))
            (_, our_base, our_name), (_, their_base, their_name) = servers
            for base, name in ((our_base, our_name), (their_base, their_name)):
                asyncio.run(load_test(base, name, 1, 8))  # warm-up
            ceilings: dict[int, float] = {}
            ours: list[Run] = []
            theirs: list[Run] = []
            for c in clients:
                print(f"{c} clients…", file=sys.stderr)
                raw_runs, our_runs, their_runs = [], [], []
                for _ in range(args.rounds):
                    raw_runs.append(raw_in_subprocess(args, c))
                    our_runs.append(asyncio.run(load_test(our_base, our_name, c, args.max_tokens)))
                    their_runs.append(
                        asyncio.run(load_test(their_base, their_name, c, args.max_tokens))
                    )
                ceilings[c] = statistics.median(raw_runs)
                ours.append(median_run(our_runs))
                theirs.append(median_run(their_runs))
            our_prefix = asyncio.run(prefix_ttft(our_base, our_name))
            their_prefix = asyncio.run(prefix_ttft(their_base, their_name))
        finally:
            for process, _, _ in servers:
                process.terminate()
                process.wait()

    by_clients = {r.clients: r for r in ours}
    their_by = {r.clients: r for r in theirs}
    summary = [
        "| measure | value | target |", "|---|---:|---|",
        f"| raw ceiling, 1 sequence | {ceilings.get(1, 0):.1f} tok/s | |",
        f"| raw ceiling, 8 sequences | {ceilings.get(8, 0):.1f} tok/s | |",
        f"| API 1 stream / raw 1 | {by_clients[1].per_stream_tps / ceilings[1]:.2f}× | ≥ 0.95× |",
        f"| API 8 streams / raw 8 | {by_clients[8].aggregate_tps / ceilings[8]:.2f}× | ≥ 0.9× |",
        f"| API 8 streams / llama_cpp.server 8 | {by_clients[8].aggregate_tps / their_by[8].aggregate_tps:.2f}× | ≥ 3× |",
        f"| warm / cold TTFT, ~1k-token system prompt (API) | {our_prefix[1]:.0f} / {our_prefix[0]:.0f} ms = {our_prefix[1] / our_prefix[0]:.2f}× | ≤ 0.2× |",
        f"| warm / cold TTFT (llama_cpp.server) | {their_prefix[1]:.0f} / {their_prefix[0]:.0f} ms = {their_prefix[1] / their_prefix[0]:.2f}× | |",
    ]  # fmt: skip
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report = "\n\n".join([
        f"## Engine: batched decode, API vs llama_cpp.server ({stamp})",
        f"Model `{args.model.name}`, {args.threads} threads, {args.max_tokens} tokens per request, "
        f"greedy. Command: `.venv/bin/python benchmarks/bench_engine.py`. Plot: `{args.plot.name}`.",
        "\n".join(summary),
        table("appliance API (`appliance serve`, 16 slots)", ours),
        table("llama-cpp-python `llama_cpp.server`", theirs),
        "Raw ceiling by sequences: " + ", ".join(f"{n}: {v:.1f} tok/s" for n, v in ceilings.items()),
    ])  # fmt: skip
    print(report)
    with args.results.open("a") as results:
        results.write("\n\n" + report + "\n")
    plot(ours, theirs, ceilings, args.plot)
    print(f"\nwrote {args.results} and {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
