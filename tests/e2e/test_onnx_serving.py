"""An ONNX model (made by onnxruntime-genai's builder) served by a real daemon exactly like a
GGUF one: imported with the CLI, listed, answered through the official `openai` and `ollama`
clients (plain and streamed), placed on onnxruntime's CPU provider with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import openai
import pytest

from appliance.client import AdminClient
from helpers.builder_onnx import builder_onnx_model
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon
from helpers.tiny_onnx import write_tiny_onnx

QUESTION = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def onnx_daemon(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("onnx-home")
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    run_cli(home, "models", "import", str(builder_onnx_model()), "--name", "tiny-onnx")
    handle = start_daemon(home, APPLIANCE_ENGINE__MAX_LOADED="2")
    yield handle
    stop_daemon(handle)


@pytest.fixture
def client(onnx_daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=onnx_daemon.base_url, api_key=onnx_daemon.api_key, max_retries=0)


def test_the_onnx_model_is_listed_beside_the_gguf_one(client: openai.OpenAI) -> None:
    assert {"smollm2", "tiny-onnx"} <= {m.id for m in client.models.list()}


def test_chat_with_the_onnx_model_answers_with_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="tiny-onnx", messages=QUESTION, temperature=0, max_tokens=12
    )
    choice = answer.choices[0]
    assert answer.model == "tiny-onnx"
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 3
    assert 0 < answer.usage.completion_tokens <= 12
    again = client.chat.completions.create(
        model="tiny-onnx", messages=QUESTION, temperature=0, max_tokens=12
    )
    assert again.choices[0].message == choice.message, "greedy answers repeat"


def test_a_streamed_onnx_answer_arrives_in_pieces(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-onnx", messages=QUESTION, temperature=0, max_tokens=16, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    # The template opens a <think> block: the text streams as reasoning or as content.
    pieces = [c for c in chunks if c.choices and _text(c.choices[0].delta)]
    # The first token alone, the rest a few to a chunk (`engine.stream_interval_ms`).
    assert len(pieces) >= 2
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert len(finishes) == 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens >= max(len(pieces), 3)


def test_json_schema_output_from_the_onnx_model_matches_the_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}, "rank": {"type": "integer"}},
        "required": ["city", "rank"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model="tiny-onnx", messages=QUESTION, max_tokens=64, seed=5,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )  # fmt: skip
    parsed = json.loads(answer.choices[0].message.content)
    assert parsed["city"] in ("Paris", "Rome") and isinstance(parsed["rank"], int)


def test_ollama_chat_and_ps_serve_the_onnx_model(onnx_daemon: Daemon) -> None:
    client = ollama.Client(
        host=onnx_daemon.root_url, headers={"Authorization": f"Bearer {onnx_daemon.api_key}"}
    )
    reply = client.chat(
        model="tiny-onnx", messages=QUESTION, options={"temperature": 0, "num_predict": 8}
    )
    assert reply.done and reply.eval_count and reply.eval_count > 0
    running = {m.model: m for m in client.ps().models}
    assert "tiny-onnx" in running


def test_the_admin_load_shows_onnxruntime_and_its_provider_with_the_reason(
    onnx_daemon: Daemon,
) -> None:
    with AdminClient(onnx_daemon.admin_socket) as admin:
        loaded = admin.load_model("tiny-onnx")
        stats = admin.model_stats("tiny-onnx")
    assert loaded.engine == "onnxruntime"
    assert loaded.backend == "CPUExecutionProvider"
    assert "onnxruntime on the CPU" in loaded.placement
    assert stats["slots_total"] >= 1


def test_a_folder_the_engine_cannot_serve_is_refused_at_import(tmp_path: Path) -> None:
    folder = write_tiny_onnx(tmp_path / "no-genai")
    (folder / "genai_config.json").unlink()
    result = run_cli(tmp_path / "home", "models", "import", str(folder), check=False)
    assert result.returncode != 0
    assert "genai_config.json" in result.stderr + result.stdout


def _text(delta: object) -> str:
    return (getattr(delta, "content", None) or "") + (
        getattr(delta, "reasoning_content", None) or ""
    )


def test_embeddings_from_the_onnx_model_are_refused_naming_the_limit(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="tiny-onnx", input=["hello"])
    assert "onnxruntime" in str(caught.value) and "GGUF" in str(caught.value)
