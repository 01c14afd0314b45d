"""The Ollama API as its own clients see it: the official `ollama` package against the daemon.

Chat, generate, list, ps, show, embed and streaming through `ollama.Client` (which passes the
API key as `Authorization: Bearer`), plus raw HTTP for the wire details the client hides:
NDJSON lines, error shapes, curl-style bodies.
"""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from helpers.daemon import Daemon

QUESTION = [{"role": "user", "content": "Name the capital of France."}]
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
GREEDY = {"temperature": 0, "num_predict": 32}


@pytest.fixture
def client(daemon: Daemon) -> ollama.Client:
    return ollama.Client(
        host=daemon.root_url, headers={"Authorization": f"Bearer {daemon.api_key}"}
    )


def test_chat_answers_with_ollama_fields_and_token_counts(client: ollama.Client) -> None:
    answer = client.chat(model="smollm2", messages=QUESTION, options=GREEDY)
    assert "Paris" in answer.message.content
    assert answer.message.role == "assistant"
    assert answer.done and answer.done_reason == "stop"
    assert answer.model == "smollm2"
    assert answer.prompt_eval_count > 10 and answer.eval_count > 0
    assert answer.total_duration >= answer.eval_duration > 0
    assert answer.created_at is not None


def test_streamed_chat_arrives_in_pieces_and_ends_with_done(client: ollama.Client) -> None:
    parts = list(client.chat(model="smollm2", messages=QUESTION, options=GREEDY, stream=True))
    text = [p.message.content for p in parts if not p.done]
    # The first token alone, the rest a few to a line (`engine.stream_interval_ms`).
    assert len(text) >= 2, "the answer should stream, not arrive as one block"
    assert "Paris" in "".join(text)
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert parts[-1].done_reason == "stop"
    whole = client.chat(model="smollm2", messages=QUESTION, options=GREEDY)
    assert "".join(text) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count >= len(text)


def test_generate_completes_a_prompt_through_the_chat_template(client: ollama.Client) -> None:
    answer = client.generate(model="smollm2", prompt="Name the capital of France.",
                             options=GREEDY)  # fmt: skip
    assert "Paris" in answer.response
    assert answer.done_reason == "stop"
    streamed = "".join(
        p.response for p in client.generate(model="smollm2", prompt="Name the capital of "
                                            "France.", options=GREEDY, stream=True)
    )  # fmt: skip
    assert streamed == answer.response


def test_raw_generate_continues_the_text_without_a_template(client: ollama.Client) -> None:
    answer = client.generate(model="smollm2", prompt="One, two, three,", raw=True,
                             options={"temperature": 0, "num_predict": 6})  # fmt: skip
    assert answer.done_reason == "length"
    assert answer.eval_count == 6
    assert "four" in answer.response.lower()


def test_num_predict_and_stop_options_reach_the_sampler(client: ollama.Client) -> None:
    cut = client.chat(model="smollm2", messages=[{"role": "user", "content": "Tell a story."}],
                      options={"num_predict": 4})  # fmt: skip
    assert cut.done_reason == "length" and cut.eval_count == 4
    stopped = client.chat(model="smollm2", messages=QUESTION,
                          options={**GREEDY, "stop": ["Paris"]})  # fmt: skip
    assert "Paris" not in stopped.message.content


def test_format_schema_gives_json_matching_the_schema(client: ollama.Client) -> None:
    answer = client.chat(model="smollm2", messages=QUESTION, format=CITY_SCHEMA,
                         options={"temperature": 0, "num_predict": 60})  # fmt: skip
    data = json.loads(answer.message.content)
    assert isinstance(data["city"], str) and isinstance(data["population"], int)
    # A prompt the 135M model answers briefly: a long one would run past num_predict mid-object.
    plain = client.generate(
        model="smollm2",
        prompt="Give the capital of France as a JSON object.",
        format="json",
        options={"temperature": 0, "num_predict": 60},
    )
    assert plain.done_reason == "stop"
    assert isinstance(json.loads(plain.response), dict)


def test_tools_come_back_as_ollama_tool_calls_with_object_arguments(
    client: ollama.Client,
) -> None:
    def get_weather(city: str) -> str:
        """Current weather in a city.

        Args:
          city: the city name
        """
        return "sunny"

    answer = client.chat(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
        tools=[get_weather],
        options={"temperature": 0, "num_predict": 80},
    )
    # SmolLM2-135M does not reliably call tools by itself; the tool list must reach the
    # prompt and whatever comes back must parse. A call, when made, has object arguments.
    for call in answer.message.tool_calls or []:
        assert call.function.name == "get_weather"
        assert isinstance(call.function.arguments, dict)
    follow_up = client.chat(
        model="smollm2",
        messages=[
            *QUESTION,
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"},
        ],
        options=GREEDY,
    )  # fmt: skip
    assert follow_up.done and follow_up.message.content


def test_list_shows_installed_models_with_details(client: ollama.Client) -> None:
    models = client.list().models
    assert [m.model for m in models] == ["smollm2"]
    details = models[0].details
    assert details.format == "gguf" and details.family == "llama"
    assert details.parameter_size == "135M" and details.quantization_level == "Q4_1"
    assert models[0].size > 50_000_000 and len(models[0].digest) == 64


def test_ps_shows_the_loaded_model_and_its_context(client: ollama.Client) -> None:
    client.chat(model="smollm2", messages=QUESTION, options={"num_predict": 1})
    running = client.ps().models
    assert [m.model for m in running] == ["smollm2"]
    assert running[0].context_length > 0
    assert running[0].size_vram == 0  # the CPU holds it
    assert running[0].expires_at is not None


def test_show_reports_template_details_and_capabilities(client: ollama.Client) -> None:
    shown = client.show("smollm2:latest")
    assert "<|im_start|>" in shown.template
    assert shown.details.family == "llama"
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] > 0
    assert "completion" in shown.capabilities


def test_embed_gives_one_unit_vector_per_input(client: ollama.Client) -> None:
    result = client.embed(model="smollm2", input=["a cat", "a dog", "the stock market"])
    assert len(result.embeddings) == 3
    for vector in result.embeddings:
        assert abs(sum(x * x for x in vector) - 1.0) < 1e-3
    assert result.prompt_eval_count > 0
    single = client.embeddings(model="smollm2", prompt="a cat")
    assert single.embedding == pytest.approx(result.embeddings[0], abs=1e-4)


def test_version_and_root_answer_without_a_key(daemon: Daemon) -> None:
    assert httpx.get(daemon.root_url + "/").text == "Ollama is running"
    version = httpx.get(f"{daemon.root_url}/api/version").json()["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 6, 0)


def test_missing_key_is_refused_with_401_in_ollama_shape(daemon: Daemon) -> None:
    anonymous = ollama.Client(host=daemon.root_url)
    with pytest.raises(ollama.ResponseError) as caught:
        anonymous.list()
    assert caught.value.status_code == 401
    assert "API key" in caught.value.error


def test_unknown_model_is_404_naming_the_installed_ones(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="deepseek-r1:671b", messages=QUESTION)
    assert caught.value.status_code == 404
    assert "deepseek-r1:671b" in caught.value.error and "smollm2" in caught.value.error


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "smollm2", "messages": QUESTION, "options": {"temperature": 9}}, "temperature"),
        ({"model": "smollm2", "messages": QUESTION, "format": "yaml"}, "format"),
        ({"model": "smollm2", "messages": QUESTION, "keep_alive": "soon"}, "keep_alive"),
        ({"model": "smollm2", "messages": [{"role": "user", "content": "hi",
                                            "images": ["aGk="]}]}, "images"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_with_a_plain_error_string(
    daemon: Daemon, body: dict[str, object], expected: str
) -> None:
    response = httpx.post(f"{daemon.root_url}/api/chat", json=body,
                          headers={"Authorization": f"Bearer {daemon.api_key}"})  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert isinstance(error, str) and expected in error


def test_curl_style_form_encoded_body_is_read_as_json(daemon: Daemon) -> None:
    # Ollama's own documentation uses `curl URL -d '{...}'`, which says form-urlencoded.
    response = httpx.post(
        f"{daemon.root_url}/api/generate",
        content=json.dumps({"model": "smollm2", "prompt": "Hi", "options": {"num_predict": 3}}),
        headers={"Authorization": f"Bearer {daemon.api_key}",
                 "Content-Type": "application/x-www-form-urlencoded"},
        timeout=120,  # httpx's 5 s default is no bound on a loaded 2-CPU box
    )  # fmt: skip
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 3
    assert all(line["done"] is False for line in lines[:-1])


def test_empty_prompt_loads_the_model_and_says_so(client: ollama.Client) -> None:
    answer = client.generate(model="smollm2", prompt="")
    assert answer.done and answer.done_reason == "load"
