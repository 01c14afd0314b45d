"""Fair share: one key floods the box, another asks single questions; the polite key's TTFT.

Starts `appliance serve` on a temporary home with the embedded SmolLM2 model and `slots`
conversations per model, makes two API keys, then measures the polite key's time to first
token (first piece of answer text) for single streamed questions:

(a) alone, on an idle box;
(b) while the other key keeps `--flood` streams open all the time (each one re-sent as soon as
    it ends), so that slots are scarce and requests wait in the round-robin queue.

Prints a table and appends it to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/fair_share.py                # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/fair_share.py --slots 4 --flood 12 --asks 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the daemon helpers the e2e tests use

from appliance.store.embedded import embedded_model_path  # noqa: E402
from helpers.daemon import run_cli, start_daemon, stop_daemon  # noqa: E402
from helpers.runtime import RUNTIME_CACHE  # noqa: E402

QUESTION = [{"role": "user", "content": "Name three colours."}]
# SmolLM2's end tokens banned: every flood answer runs to its max_tokens.
NO_END = {"0": -100, "2": -100}


async def ttft(client: httpx.AsyncClient, url: str, key: str, max_tokens: int) -> float:
    """Seconds from sending a streamed chat request to its first piece of answer text."""
    body = {"model": "smollm2", "messages": QUESTION, "stream": True, "max_tokens": max_tokens,
            "temperature": 0}  # fmt: skip
    started = time.perf_counter()
    first: float | None = None
    async with client.stream("POST", url, json=body,
                             headers={"Authorization": f"Bearer {key}"}) as answer:  # fmt: skip
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line.removeprefix("data: "))["choices"]
                if choices and choices[0]["delta"].get("content"):
                    first = time.perf_counter() - started
    assert first is not None, "no answer text"
    return first


async def flood(client: httpx.AsyncClient, url: str, key: str, tokens: int, stop: asyncio.Event,
                done: list[int]) -> None:  # fmt: skip
    body = {"model": "smollm2", "messages": QUESTION, "stream": True, "max_tokens": tokens,
            "logit_bias": NO_END}  # fmt: skip
    while not stop.is_set():
        async with client.stream("POST", url, json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as answer:  # fmt: skip
            async for _ in answer.aiter_lines():
                pass
            done.append(answer.status_code)


async def polite_run(url: str, key: str, asks: int, gap_s: float) -> list[float]:
    async with httpx.AsyncClient(timeout=600) as client:
        figures = []
        for _ in range(asks):
            figures.append(await ttft(client, url, key, 8))
            await asyncio.sleep(gap_s)
        return figures


async def flooded_run(url: str, polite: str, flooder: str, args: argparse.Namespace
                      ) -> tuple[list[float], list[int]]:  # fmt: skip
    stop = asyncio.Event()
    done: list[int] = []
    limits = httpx.Limits(max_connections=args.flood + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        streams = [asyncio.create_task(flood(client, url, flooder, args.flood_tokens, stop, done))
                   for _ in range(args.flood)]  # fmt: skip
        await asyncio.sleep(args.warmup_s)  # every slot busy and a queue waiting
        figures = await polite_run(url, polite, args.asks, args.gap_s)
        stop.set()
        # Hang up on the flood (the daemon cancels those generations) rather than wait for it.
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    return figures, done


def summary(figures: list[float]) -> str:
    ordered = sorted(figures)
    p50 = statistics.median(ordered)
    return f"{p50 * 1000:,.0f} | {ordered[-1] * 1000:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--flood", type=int, default=12, help="streams the flooding key keeps open")
    parser.add_argument("--flood-tokens", type=int, default=64)
    parser.add_argument("--asks", type=int, default=8, help="questions the polite key asks")
    parser.add_argument("--gap-s", type=float, default=1.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    os.environ["APPLIANCE_RUNTIME__CACHE_DIR"] = str(RUNTIME_CACHE)
    home = Path(tempfile.mkdtemp(prefix="fair-share-"))
    run_cli(home, "models", "import", str(embedded_model_path()), "--name", "smollm2")
    daemon = start_daemon(home, APPLIANCE_ENGINE__SLOTS=str(args.slots),
                          APPLIANCE_ENGINE__QUEUE_SIZE=str(args.flood + 8))  # fmt: skip
    try:
        keys = {}
        for name in ("office", "script"):
            created = run_cli(home, "keys", "create", "--name", name, "--json")
            keys[name] = json.loads(created.stdout)["key"]
        url = f"{daemon.base_url}/chat/completions"
        asyncio.run(polite_run(url, keys["office"], 2, 0))  # warm the prompt cache and pages
        alone = asyncio.run(polite_run(url, keys["office"], args.asks, args.gap_s))
        flooded, flood_done = asyncio.run(flooded_run(url, keys["office"], keys["script"], args))
    finally:
        stop_daemon(daemon)

    load = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"\n## Fair share: one key floods, the other asks ({when})\n",
        f"Model `SmolLM2-135M-Instruct Q4_1`, {args.slots} slots, queue {args.flood + 8}; "
        f"the script key keeps {args.flood} streams of {args.flood_tokens} tokens open, the "
        f"office key asks {args.asks} single streamed questions (8 tokens) {args.gap_s:g} s apart. "
        f"TTFT: request sent to first answer text. {os.cpu_count()} CPUs, load average "
        f"{load:.1f} at the end. Command: `.venv/bin/python benchmarks/fair_share.py "
        f"--slots {args.slots} --flood {args.flood}`.\n",
        "| office key | TTFT p50 ms | TTFT max ms |",
        "|---|---|---|",
        f"| alone | {summary(alone)} |",
        f"| while the script floods | {summary(flooded)} |",
        "",
        f"Script streams finished during the run: {len(flood_done)} "
        f"(statuses {sorted(set(flood_done))}).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with (HERE / "RESULTS.md").open("a") as results:
            results.write(text)


if __name__ == "__main__":
    main()
