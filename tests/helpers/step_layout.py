"""How the batcher lays out llama.cpp's decode steps: which sequence ids each step holds, in order.

Test helper; loads llama.cpp only in the child process. `record(path, scenario)` runs
`python -m helpers.step_layout PATH SCENARIO` in a subprocess (llama.cpp loads once per
process, and the tests' own process must not hold it), which drives the worker's real `Batcher`
on the real llama.cpp runtime (6 slots of 512 tokens), records the sequence ids of every batch
handed to `llama_decode`, and prints them with each request's text and end as JSON.

Why it matters: with one KV stream per slot, llama.cpp decodes a batch in one pass only while
each next sequence id is the last one's plus one; every gap starts another pass over all the
weights (`LlamaRuntime.one_pass_per_run`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SLOTS = 6


def record(path: Path, scenario: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-m", "helpers.step_layout", str(path), scenario],
        capture_output=True, text=True, env=env, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


QUESTIONS = [f"Describe {city} in one sentence, for a visitor who lands there tomorrow." for city in
             ("Lisbon", "Oslo", "Vienna", "Cairo", "Lima", "Perth")]  # fmt: skip


def _main(path: str, scenario: str) -> None:
    from appliance.config import Config
    from appliance.runtime import activate_in_process

    activate_in_process(Config())  # the daemon's self-tested CPU variant
    from appliance.engine.messages import Delta, Done, Failed, FromWorker, Load, Submit
    from appliance.engine.worker.batcher import Batcher
    from appliance.engine.worker.llamacpp import LlamaRuntime

    rt = LlamaRuntime(Load(path, 512, 2, slots=SLOTS))
    steps: list[list[int]] = []
    decode = rt.decode

    def recording(batch: Any) -> int:
        steps.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
        return decode(batch)

    rt.decode = recording  # type: ignore[method-assign]
    copies: list[tuple[int, int]] = []
    copy_prefix = rt.copy_prefix

    def counting(source: int, target: int, length: int) -> None:
        copies.append((source, target))
        copy_prefix(source, target, length)

    rt.copy_prefix = counting  # type: ignore[method-assign]
    texts: dict[str, str] = {}
    ends: dict[str, dict[str, Any]] = {}

    def send(message: FromWorker) -> None:
        if isinstance(message, Delta):
            texts[message.id] = texts.get(message.id, "") + message.text
        elif isinstance(message, Done):
            ends[message.id] = {"cached": message.cached_tokens, "prompt": message.prompt_tokens}
        elif isinstance(message, Failed):
            ends[message.id] = {"failed": message.message}

    batcher = Batcher(rt, send)

    def run(*requests: Submit, then: list[tuple[int, Submit]] | None = None) -> None:
        """Submit `requests`, step to the end; each of `then` is submitted after its step."""
        for request in requests:
            batcher.submit(request)
        step = 0
        later = sorted(then or [], key=lambda pair: pair[0])
        while batcher.has_work() or later:
            while later and later[0][0] <= step:
                batcher.submit(later.pop(0)[1])
            batcher.step()
            step += 1

    # Six conversations, one after the other: with nothing busy each takes the least
    # recently used slot, so conversation i is cached in slot i.
    for i, question in enumerate(QUESTIONS):
        run(Submit(f"first{i}", chat(question), 12, temperature=0))
    steps.clear()
    if scenario == "asked-again":
        # Conversation 2 asked again at length; meanwhile 5 and 0, cached out of its line, and
        # a new question with two choices.
        run(
            Submit("long", chat(QUESTIONS[2]), 40, temperature=0),
            then=[
                (2, Submit("again5", chat(QUESTIONS[5]), 12, temperature=0)),
                (3, Submit("again0", chat(QUESTIONS[0]), 12, temperature=0)),
                (4, Submit("pair", chat("Name a colour."), 8, temperature=0.8, seed=3, n=2)),
            ],
        )
    elif scenario == "middle-ends-first":
        # Conversations 1, 2 and 3 asked again side by side (each continues in its own slot);
        # 2 ends first, 1 and 3 go on. Then 2 is asked again.
        run(
            Submit("left", chat(QUESTIONS[1]), 30, temperature=0),
            Submit("middle", chat(QUESTIONS[2]), 3, temperature=0),
            Submit("right", chat(QUESTIONS[3]), 30, temperature=0),
        )
        busy_steps = len(steps)
        run(Submit("middle again", chat(QUESTIONS[2]), 12, temperature=0))
        del steps[busy_steps:]
    elif scenario == "already-in-line":
        # Conversation 1 asked three times at once: the other two are copied next to it (0, 2).
        run(*(Submit(f"thrice{k}", chat(QUESTIONS[1]), 12, temperature=0) for k in range(3)))
        del copies[:], steps[:]
        # With conversation 3 going on in slot 3, conversation 1 is asked again: slot 2, next
        # to it, already holds it, though slot 0 is the first that does.
        run(
            Submit("long3", chat(QUESTIONS[3]), 20, temperature=0),
            then=[(1, Submit("once", chat(QUESTIONS[1]), 12, temperature=0))],
        )
    print(json.dumps({"steps": steps, "texts": texts, "ends": ends, "copies": copies}))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
