"""DeepSeek reasoning over the wire: a tiny R1-vocabulary model whose template opens `<think>`.

The model (helpers/tiny_gguf.py) has random weights, so its text is noise; what it writes is
steered with `logit_bias` (its `</think>` and end-of-sentence ids are known) and the worker's
`reasoning_budget`, and the tests check where that text lands: `reasoning_content` (or the
requested field) for the thinking block, `content` for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gguf import GGUFReader

from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon
from helpers.tiny_gguf import EOS, write_tiny_llama

HI = [{"role": "user", "content": "hi"}]


def token_id(model: Path, text: str) -> int:
    field = GGUFReader(model).fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode() for i in field.data]
    return tokens.index(text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("tiny-home")
    model = write_tiny_llama(home / "tiny-r1.gguf")
    run_cli(home, "models", "import", str(model), "--name", "tiny-r1")
    daemon = start_daemon(home)
    # Never end early, never close the block by chance: only the budget closes it.
    steer = {str(token_id(model, tag)): -100 for tag in (EOS, "<think>", "</think>")}
    yield daemon, {"model": "tiny-r1", "messages": HI, "seed": 11, "logit_bias": steer}
    stop_daemon(daemon)


def post(daemon: Daemon, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{daemon.base_url}/chat/completions", json=body,
        headers={"Authorization": f"Bearer {daemon.api_key}"}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def test_output_inside_the_prompts_open_think_block_is_reasoning(tiny: Any) -> None:
    daemon, base = tiny
    message = post(daemon, {**base, "max_tokens": 8})["choices"][0]["message"]
    assert message["reasoning_content"]
    assert message["content"] == ""
    assert "<think>" not in message["reasoning_content"]


def test_reasoning_budget_ends_thinking_and_the_rest_is_the_answer(tiny: Any) -> None:
    daemon, base = tiny
    answer = post(daemon, {**base, "max_tokens": 12, "reasoning_budget": 3})
    message = answer["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"]
    assert "think>" not in message["reasoning_content"] + message["content"]


@pytest.mark.parametrize(("fmt", "field"), [("ollama", "thinking"), ("vllm", "reasoning")])
def test_reasoning_format_picks_the_field_name(tiny: Any, fmt: str, field: str) -> None:
    daemon, base = tiny
    message = post(daemon, {**base, "max_tokens": 6, "reasoning_format": fmt})["choices"][0][
        "message"
    ]
    assert message[field]
    assert "reasoning_content" not in message


def test_reasoning_format_none_leaves_the_tags_in_the_content(tiny: Any) -> None:
    daemon, base = tiny
    body = {**base, "max_tokens": 12, "reasoning_budget": 3, "reasoning_format": "none"}
    message = post(daemon, body)["choices"][0]["message"]
    assert message["content"].startswith("<think>\n") and "</think>" in message["content"]
    assert "reasoning_content" not in message


def test_streamed_split_matches_the_non_streamed_one(tiny: Any) -> None:
    daemon, base = tiny
    body = {**base, "max_tokens": 16, "reasoning_budget": 5, "temperature": 1.0}
    whole = post(daemon, body)["choices"][0]["message"]
    client = openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)
    reasoning, content = "", ""
    known = {k: v for k, v in body.items() if k != "reasoning_budget"}
    extra = {"reasoning_budget": body["reasoning_budget"]}
    for chunk in client.chat.completions.create(**known, extra_body=extra, stream=True):
        if chunk.choices:
            extra = chunk.choices[0].delta.model_extra or {}
            reasoning += extra.get("reasoning_content") or ""
            content += chunk.choices[0].delta.content or ""
    assert (reasoning, content) == (whole["reasoning_content"], whole["content"])
    assert reasoning and content


def test_thinking_switched_off_by_template_kwargs_answers_directly(tiny: Any) -> None:
    daemon, base = tiny
    body = {**base, "max_tokens": 6, "chat_template_kwargs": {"enable_thinking": False}}
    message = post(daemon, body)["choices"][0]["message"]
    assert message["content"] and "reasoning_content" not in message


def test_logit_bias_reaches_the_sampler(tiny: Any) -> None:
    daemon, base = tiny
    # `</think>` pushed up: thinking ends at the first token, and the answer is more of it.
    model_path = next(Path(daemon.home).glob("**/*.gguf"))
    bias = {str(token_id(model_path, "</think>")): 100}
    message = post(daemon, {**base, "max_tokens": 3, "logit_bias": bias})["choices"][0]["message"]
    assert "reasoning_content" not in message
    assert message["content"] == "</think></think>"


def test_r1_output_is_valid_json_when_a_schema_is_asked_for(tiny: Any) -> None:
    daemon, base = tiny
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}
    response_format = {"type": "json_schema", "json_schema": {"schema": schema}}
    body = {**base, "max_tokens": 40, "logit_bias": {}, "response_format": response_format}
    answer = post(daemon, body)["choices"][0]
    if answer["finish_reason"] == "stop":
        assert isinstance(json.loads(answer["message"]["content"])["a"], bool)
    assert answer["message"]["content"].lstrip().startswith("{")
    assert "reasoning_content" not in answer["message"]


def test_a_keys_reasoning_format_applies_unless_the_request_says(tiny: Any) -> None:
    daemon, base = tiny
    created = run_cli(
        daemon.home, "keys", "create", "--name", "ollama-user", "--reasoning-format", "ollama",
        "--json",
    )  # fmt: skip
    key = json.loads(created.stdout)["key"]
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{daemon.base_url}/chat/completions"
    keyed = httpx.post(url, json={**base, "max_tokens": 6}, headers=headers, timeout=60).json()
    assert keyed["choices"][0]["message"]["thinking"]
    asked = {**base, "max_tokens": 6, "reasoning_format": "deepseek"}
    overridden = httpx.post(url, json=asked, headers=headers, timeout=60).json()
    assert overridden["choices"][0]["message"]["reasoning_content"]
    # Back to the box's default for this key.
    run_cli(daemon.home, "keys", "set", "ollama-user")
    default = httpx.post(url, json={**base, "max_tokens": 6}, headers=headers, timeout=60).json()
    assert default["choices"][0]["message"]["reasoning_content"]
