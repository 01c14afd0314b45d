"""`engine.draft_model` seen from outside: a real daemon on a home holding SmolLM2, a tiny
random model with SmolLM2's vocabulary and a tiny model with DeepSeek's.

`auto` loads the same-vocabulary one beside SmolLM2 and says so in status and stats; `off` loads
none; a named model with another vocabulary fails SmolLM2's load with a message naming both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from appliance.client import AdminClient
from helpers.copied_vocab import write_tiny_with_vocabulary_of
from helpers.daemon import run_cli, start_daemon, stop_daemon
from helpers.tiny_gguf import write_tiny_llama


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Path:
    home = tmp_path_factory.mktemp("draft-home")
    same = write_tiny_with_vocabulary_of(embedded_model, home / "same.gguf")
    other = write_tiny_llama(home / "other.gguf")
    for path, name in ((embedded_model, "smollm2"), (same, "tiny-same"), (other, "tiny-ds")):
        run_cli(home, "models", "import", str(path), "--name", name)
    return home


def loaded(home: Path) -> dict[str, dict]:
    models = json.loads(run_cli(home, "status", "--json").stdout)["models_loaded"]
    return {m["name"]: m for m in models}


def test_auto_drafts_with_the_same_vocabulary_model_and_says_so(home: Path) -> None:
    daemon = start_daemon(home)
    try:
        assert loaded(home)["smollm2"]["draft_model"] == "tiny-same"
        assert "smollm2 drafts with tiny-same" in run_cli(home, "status").stdout
        assert "drafting with tiny-same" in run_cli(home, "models", "load", "smollm2").stdout
        client = openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)
        answer = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Write a short story about the sea."}],
            max_tokens=24,
            temperature=0,
        )
        assert answer.choices[0].message.content
        with AdminClient(daemon.admin_socket) as admin:
            stats = admin.model_stats("smollm2")
        assert stats["draft_model"] == "tiny-same"
        assert stats["model_draft_tokens"] > 0  # the random drafter guessed (and missed)
    finally:
        stop_daemon(daemon)


def test_off_loads_no_draft_model(home: Path) -> None:
    daemon = start_daemon(home, APPLIANCE_ENGINE__DRAFT_MODEL="off")
    try:
        assert loaded(home)["smollm2"]["draft_model"] == ""
        assert "drafts with" not in run_cli(home, "status").stdout
    finally:
        stop_daemon(daemon)


def test_a_named_draft_with_another_vocabulary_fails_the_load_saying_why(home: Path) -> None:
    daemon = start_daemon(home, wait_ready=False, APPLIANCE_ENGINE__DRAFT_MODEL="tiny-ds")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                model = loaded(home).get("smollm2")
            except AssertionError:  # the admin socket is not up yet
                model = None
            if model and model["state"] == "failed":
                break
            time.sleep(0.3)
        assert model is not None and model["state"] == "failed", model
        assert "'tiny-ds' cannot draft for 'smollm2': their vocabularies differ" in model["error"]
        refused = run_cli(home, "models", "load", "smollm2", check=False)
        assert refused.returncode != 0
        assert "their vocabularies differ" in refused.stderr
        assert "Traceback" not in refused.stderr + daemon.log()
    finally:
        stop_daemon(daemon)
