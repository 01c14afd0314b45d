"""A box whose CPU cannot run a llama.cpp variant still serves chat: the daemon's self-test
rejects the variant with the reason, the worker loads the next one, and the administrator sees
why in `appliance devices` and `appliance status` (the AMX Xeon VM of the runtime issue)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon
from helpers.runtime import runtime_with_a_variant_this_cpu_cannot_run


@pytest.fixture(scope="module")
def forced(
    tmp_path_factory: pytest.TempPathFactory, embedded_model: Path
) -> Iterator[tuple[Daemon, str]]:
    root, lacking = runtime_with_a_variant_this_cpu_cannot_run(tmp_path_factory.mktemp("rt"))
    home = tmp_path_factory.mktemp("forced")
    env = {
        "APPLIANCE_RUNTIME__LLAMA_DIR": str(root),
        # Tried first, as an administrator forcing it would: the self-test must catch it.
        "APPLIANCE_RUNTIME__CPU_VARIANTS": json.dumps([lacking, "haswell", "x64"]),
        # A cache of its own, so this daemon really runs the self-test.
        "APPLIANCE_RUNTIME__CACHE_DIR": str(home / "cache"),
        "APPLIANCE_ENGINE__CONTEXT_LENGTH": "1024",
    }
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2", **env)
    # It self-tests four variants before the first load: allow for a busy machine.
    daemon = start_daemon(home, ready_timeout_s=400, **env)
    yield daemon, lacking
    stop_daemon(daemon)


def test_chat_is_served_on_the_next_variant_that_passed(forced: tuple[Daemon, str]) -> None:
    daemon, _ = forced
    client = openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)
    answer = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=24,
        messages=[{"role": "user", "content": "Name the capital of France."}],
    )  # fmt: skip
    assert "Paris" in (answer.choices[0].message.content or "")


def test_devices_json_shows_the_rejected_variant_and_why(forced: tuple[Daemon, str]) -> None:
    daemon, lacking = forced
    runtime = json.loads(run_cli(daemon.home, "devices", "--json").stdout)["runtime"]
    choice = runtime["cpu_variant"]
    verdicts = {v["name"]: v for v in choice["verdicts"]}
    assert verdicts[lacking]["status"] == "rejected"
    assert verdicts[lacking]["reason"].startswith(f"{lacking}: ")
    assert choice["variant"] in ("haswell", "x64")
    assert verdicts[choice["variant"]]["status"] == "chosen"
    assert f"rejected: {lacking}" in choice["reason"]


def test_status_names_the_variant_the_worker_loaded(forced: tuple[Daemon, str]) -> None:
    daemon, _ = forced
    status = json.loads(run_cli(daemon.home, "status", "--json").stdout)
    [model] = status["models_loaded"]
    variant = status["runtime"]["cpu_variant"]["variant"]
    assert model["cpu_variant"] == variant
    assert f"CPU variant {variant} (self-tested)" in model["placement"]
    text = run_cli(daemon.home, "status").stdout
    assert f"CPU variant {variant}" in text
