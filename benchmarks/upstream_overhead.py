"""Upstream forwarding: what the appliance in front of another OpenAI server costs a client.

Starts llama-cpp-python's own server (`llama_cpp.server`) with the embedded SmolLM2 model and
an appliance with no model of its own that forwards `smol-up` to it, then times the same
streamed questions (a) straight to the upstream and (b) through the appliance: time to first
answer text and the whole answer. (c) repeats (b) with a dead replica listed first, so every
request fails over (connection refused on loopback) before it is answered.

Prints a table and appends it to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/upstream_overhead.py            # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/upstream_overhead.py --asks 20 --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the helpers the e2e tests use

from appliance.store.embedded import embedded_model_path  # noqa: E402
from helpers.daemon import free_port, run_cli, start_daemon, stop_daemon  # noqa: E402
from helpers.llama_server import start_llama_server  # noqa: E402

QUESTION = [{"role": "user", "content": "Name three colours."}]
NO_END = {"0": -100, "2": -100}  # SmolLM2's end tokens: every answer runs to max_tokens


def ask(url: str, key: str, model: str, max_tokens: int) -> tuple[float, float]:
    """(seconds to the first answer text, seconds to the end) of one streamed question."""
    body = {"model": model, "messages": QUESTION, "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "logit_bias": NO_END}  # fmt: skip
    started = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {key}"}) as answer:  # fmt: skip
        answer.raise_for_status()
        for line in answer.iter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[5:]).get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - started
    assert first is not None, "no answer text"
    return first, time.perf_counter() - started


def series(url: str, key: str, model: str, asks: int, max_tokens: int) -> tuple[float, float]:
    ask(url, key, model, max_tokens)  # warm-up (prompt cache, connections)
    runs = [ask(url, key, model, max_tokens) for _ in range(asks)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asks", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        server = start_llama_server(embedded_model_path(), home, api_key="bench")
        front = start_daemon(home, wait_ready=False, APPLIANCE_UPSTREAM__HEALTH_INTERVAL_S="600")
        try:
            time.sleep(2)
            run_cli(home, "upstream", "add", "smol-up", server.url, "--api-key", "bench")
            dead = f"http://127.0.0.1:{free_port()}/v1"
            run_cli(home, "upstream", "add", "smol-failover", dead)
            run_cli(home, "upstream", "add", "smol-failover", server.url, "--api-key", "bench")
            rows = [
                ("llama_cpp.server directly", series(server.url, "bench", "x", args.asks,
                                                     args.max_tokens)),
                ("through the appliance", series(front.base_url, front.api_key, "smol-up",
                                                 args.asks, args.max_tokens)),
                ("through the appliance, dead replica first",
                 series(front.base_url, front.api_key, "smol-failover", args.asks,
                        args.max_tokens)),
            ]  # fmt: skip
        finally:
            stop_daemon(front)
            server.stop()
    lines = [
        f"### Upstream forwarding overhead ({time.strftime('%Y-%m-%d')}, SmolLM2-135M Q4_1, "
        f"{args.asks} streamed asks of {args.max_tokens} tokens, medians)",
        "",
        "| path | TTFT (ms) | whole answer (ms) |",
        "|---|---|---|",
        *(f"| {name} | {ttft * 1000:.0f} | {total * 1000:.0f} |" for name, (ttft, total) in rows),
        "",
        "`.venv/bin/python benchmarks/upstream_overhead.py"
        f" --asks {args.asks} --max-tokens {args.max_tokens}`",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    with (HERE / "RESULTS.md").open("a") as results:
        results.write("\n" + table)


if __name__ == "__main__":
    main()
