"""The LAN API as an OpenAI client sees it: the official `openai` package against the daemon."""

from __future__ import annotations

import httpx
import openai
import pytest

from helpers.daemon import Daemon

QUESTION = [{"role": "user", "content": "Name the capital of France."}]


@pytest.fixture
def client(daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)


def test_chat_answer_is_sensible_text_with_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=32
    )
    assert "Paris" in answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "smollm2"
    assert answer.usage.prompt_tokens > 10
    assert answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streamed_answer_arrives_in_chunks_and_ends_with_a_finish_reason(
    client: openai.OpenAI,
) -> None:
    stream = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=32, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert chunks[0].choices[0].delta.role == "assistant"
    # The first token alone, the rest a few to a chunk (`engine.stream_interval_ms`).
    assert len(content) >= 2, "the answer should stream, not arrive as one block"
    assert "Paris" in "".join(content)
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    whole = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=32
    )
    assert "".join(content) == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens >= len(content)


def test_chat_gives_the_model_its_whole_template(client: openai.OpenAI) -> None:
    # SmolLM2's template as its GGUF ships it (tokenizer.chat_template). Its BOS token is
    # `<|im_start|>` and it adds none: the chat must reach the model with the first one.
    rendered = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nName the capital of France.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    chat = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=24
    )
    raw = client.completions.create(model="smollm2", prompt=rendered, temperature=0, max_tokens=24)
    assert chat.usage.prompt_tokens == raw.usage.prompt_tokens
    assert chat.choices[0].message.content == raw.choices[0].text


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5,
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 5


def test_stop_string_ends_the_answer_before_it(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=32, stop=["Paris"]
    )
    assert "Paris" not in answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"


def test_same_seed_gives_the_same_answer(client: openai.OpenAI) -> None:
    def ask() -> str:
        reply = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Name a colour."}],
            temperature=1.0,
            seed=1234,
            max_tokens=12,
        )
        return reply.choices[0].message.content

    assert ask() == ask()


def test_models_endpoint_lists_the_installed_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["smollm2"]


def test_request_without_api_key_is_refused_with_401(daemon: Daemon) -> None:
    # The openai client refuses to send no key at all, so this is what curl would see.
    response = httpx.post(
        f"{daemon.base_url}/chat/completions", json={"model": "smollm2", "messages": QUESTION}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert "API key" in error["message"]
    assert httpx.get(f"{daemon.base_url}/models").status_code == 401


def test_wrong_api_key_is_refused_with_401(daemon: Daemon) -> None:
    impostor = openai.OpenAI(base_url=daemon.base_url, api_key="sk-" + "x" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        impostor.models.list()


def test_unknown_model_answers_404_naming_the_installed_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="deepseek-r1:671b", messages=QUESTION)
    assert "deepseek-r1:671b" in caught.value.message
    assert "smollm2" in caught.value.message


def test_default_model_alias_uses_the_loaded_model(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="default", messages=QUESTION, temperature=0, max_tokens=8
    )
    assert answer.model == "smollm2"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "smollm2"}, "messages"),
        ({"model": "smollm2", "messages": []}, "messages"),
        ({"model": "smollm2", "messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"model": "smollm2", "messages": QUESTION, "n": 9}, "n"),
        ({"model": "smollm2", "messages": QUESTION, "temperature": 5}, "temperature"),
    ],
)
def test_malformed_request_answers_400_naming_the_field(
    daemon: Daemon, body: dict[str, object], expected: str
) -> None:
    response = httpx.post(
        f"{daemon.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {daemon.api_key}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert expected in error["message"]


def test_body_that_is_not_json_answers_400(daemon: Daemon) -> None:
    response = httpx.post(
        f"{daemon.base_url}/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {daemon.api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
