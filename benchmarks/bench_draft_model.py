"""Single-stream tok/s of the appliance with a draft model on and off (speculative decoding).

Two daemons serve the same model on the same runtime, one with `engine.draft_model = DRAFT`,
one with `engine.draft_model = "off"` (prompt lookup stays on in both, as by default), and are
measured in paired, interleaved rounds (the order alternates), as bench_vs_llama_server.py
does: per round one greedy streamed answer to a story prompt (little to look up, where the draft
model guesses) and to the edit prompt (mostly prompt lookup). Reports the median tok/s of each
and the median of the paired ratios, checks the texts match, and prints the draft stats.

    .venv/bin/python benchmarks/bench_draft_model.py --model R1-7B.gguf \
        --draft-model R1-1.5B.gguf --rounds 8 --max-tokens 256

Run it on a quiet machine (see README.md); it is not run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import free_port, wait_ready
from bench_vs_llama_server import EDIT_PROMPT, RUNTIME_CACHE, Server, stream_rate

STORY_PROMPT = "Write a story about a lighthouse keeper who finds a message in a bottle."
APPLIANCE = [sys.executable, "-m", "appliance"]


def start(model: Path, draft: Path, mode: str, args: argparse.Namespace, home: Path) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    RUNTIME_CACHE.mkdir(parents=True, exist_ok=True)
    env.update(
        APPLIANCE_HOME=str(home), APPLIANCE_LISTEN=f"127.0.0.1:{port}",
        APPLIANCE_ENGINE__THREADS=str(args.threads), APPLIANCE_ENGINE__SLOTS=str(args.slots),
        APPLIANCE_ENGINE__CONTEXT_LENGTH=str(args.ctx), APPLIANCE_API__REQUIRE_API_KEY="false",
        APPLIANCE_ENGINE__MAX_TOKENS=str(max(args.max_tokens, 512)),
        APPLIANCE_RUNTIME__CACHE_DIR=str(RUNTIME_CACHE), APPLIANCE_DEFAULT_MODEL="bench",
        APPLIANCE_ENGINE__DRAFT_MODEL="draft" if mode == "on" else "off",
    )  # fmt: skip
    for path, name in ((model, "bench"), (draft, "draft")):
        subprocess.run([*APPLIANCE, "models", "import", str(path), "--name", name], env=env,
                       check=True, capture_output=True)  # fmt: skip
    process = subprocess.Popen(
        [*APPLIANCE, "serve"], env=env, stdout=subprocess.DEVNULL,
        stderr=open(home / "daemon.log", "wb"),  # noqa: SIM115 (open while the server runs)
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}/ready", process, timeout_s=900)
    return Server(f"draft {mode}", f"http://127.0.0.1:{port}/v1", "bench", process,
                  {"home": home})  # fmt: skip


def stats(server: Server) -> dict[str, object]:
    home = server.extra["home"]
    transport = httpx.HTTPTransport(uds=str(Path(str(home)) / "admin.sock"))
    with httpx.Client(transport=transport, base_url="http://appliance") as http:
        return http.get("/admin/models/bench/stats").json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the served GGUF model")
    parser.add_argument("--draft-model", type=Path, required=True,
                        help="a smaller GGUF model with the same vocabulary")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as on_home, tempfile.TemporaryDirectory() as off_home:
        servers = [
            start(args.model, args.draft_model, "on", args, Path(on_home)),
            start(args.model, args.draft_model, "off", args, Path(off_home)),
        ]
        try:
            results: dict[str, dict[str, list[float]]] = {
                w: {s.name: [] for s in servers} for w in ("story", "edit")
            }
            ratios: dict[str, list[float]] = {"story": [], "edit": []}
            for round_no in range(args.rounds):
                order = servers if round_no % 2 == 0 else servers[::-1]
                for workload, prompt in (("story", STORY_PROMPT), ("edit", EDIT_PROMPT)):
                    texts = {}
                    for server in order:
                        rate, texts[server.name] = asyncio.run(
                            stream_rate(server, prompt, args.max_tokens)
                        )
                        results[workload][server.name].append(rate)
                    if texts["draft on"] != texts["draft off"]:
                        print(f"round {round_no} {workload}: the texts differ", file=sys.stderr)
                    ratios[workload].append(
                        results[workload]["draft on"][-1] / results[workload]["draft off"][-1]
                    )
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
            print(f"model {args.model.name}, draft {args.draft_model.name}, {args.threads} "
                  f"threads, {args.max_tokens} tokens, {args.rounds} paired rounds, 1 stream\n")  # fmt: skip
            print("| workload | draft on tok/s | draft off tok/s | on / off (median of pairs) |")
            print("|---|---:|---:|---:|")
            for workload in ("story", "edit"):
                on = statistics.median(results[workload]["draft on"])
                off = statistics.median(results[workload]["draft off"])
                ratio = statistics.median(ratios[workload])
                print(f"| {workload} | {on:.1f} | {off:.1f} | {ratio:.2f}× |")
            print("\ndraft-on stats:", json.dumps(stats(servers[0])))
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(timeout=60)


if __name__ == "__main__":
    main()
