"""The ONNX engine's decode loop (onnxrt.OnnxRuntime driven by the shared batcher), in process:
parity with onnxruntime-genai on a builder-made model, logits equal to a NumPy forward pass of
the hand-built decoder step by step, batching that changes no answer, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime_genai as og
import pytest
from onnx import numpy_helper

from appliance.engine.messages import Delta, Done, Failed, FromWorker, Load, Submit
from appliance.engine.worker.batcher import Batcher
from appliance.engine.worker.onnxrt import OnnxRuntime
from helpers.builder_onnx import builder_onnx_model
from helpers.deepseek_vocab import BOS
from helpers.tiny_onnx import write_tiny_onnx

PROMPT = f"{BOS}<｜User｜>hello there, the answer<｜Assistant｜>"


@pytest.fixture(scope="module")
def built() -> Path:
    return builder_onnx_model()


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny", n_layer=2)


def runtime(folder: Path, slots: int = 4) -> OnnxRuntime:
    return OnnxRuntime(Load(str(folder), 0, 2, slots=slots, engine="onnxruntime"))


class Recorder:
    """The batcher's outbox: text per request, and its end."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.ends: dict[str, Done | Failed] = {}

    def __call__(self, message: FromWorker) -> None:
        if isinstance(message, Delta):
            self.text[message.id] = self.text.get(message.id, "") + message.text
        elif isinstance(message, Done | Failed):
            self.ends[message.id] = message


def serve(rt: OnnxRuntime, *requests: Submit, batcher: Batcher | None = None) -> Recorder:
    """Run requests to the end (on `batcher` to keep its slots' cached prompts)."""
    recorder = Recorder()
    if batcher is None:
        batcher = Batcher(rt, recorder)
    batcher.send = recorder
    for request in requests:
        batcher.submit(request)
    while batcher.has_work():
        batcher.step()
    return recorder


def greedy_tokens(rt: OnnxRuntime, prompt: str, count: int) -> list[int]:
    """Our greedy tokens, end-of-sequence included (it is not allowed to stop the run)."""
    chosen: list[int] = []
    sample = rt.sample

    def record(sampler: object, index: int) -> int:
        token = sample(sampler, index)  # type: ignore[arg-type]
        chosen.append(token)
        return token

    rt.sample = record  # type: ignore[method-assign]
    rt.eos = set()
    serve(rt, Submit("parity", prompt, count, temperature=0))
    return chosen


def genai_greedy(folder: Path, prompt_ids: list[int], count: int) -> list[int]:
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(prompt_ids) + count)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([prompt_ids], dtype=np.int32))
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


def test_greedy_output_equals_onnxruntime_genai_token_for_token(built: Path) -> None:
    rt = runtime(built)
    assert rt.layout.group_query_attention
    assert "com.microsoft:MatMulNBits" in rt.layout.operators
    ids = rt.tokenize(PROMPT)
    theirs = genai_greedy(built, ids, 48)
    ours = greedy_tokens(rt, PROMPT, 48)
    assert len(theirs) == 48
    assert ours == theirs
    assert len(set(ours)) > 5, "a random model should not repeat one token"


def test_concurrent_requests_get_the_answers_they_get_alone(built: Path) -> None:
    prompts = [
        PROMPT,
        f"{BOS}<｜User｜>why<｜Assistant｜>",
        f"{BOS}<｜User｜>a longer question here<｜Assistant｜>",
    ]
    alone = [serve(runtime(built), Submit("q", p, 24, temperature=0)).text["q"] for p in prompts]
    together = serve(
        runtime(built), *(Submit(f"q{i}", p, 24, temperature=0) for i, p in enumerate(prompts))
    )
    assert [together.text[f"q{i}"] for i in range(3)] == alone
    assert all(isinstance(together.ends[f"q{i}"], Done) for i in range(3))


def test_a_reused_prompt_prefix_gives_the_same_answer(built: Path) -> None:
    rt = runtime(built, slots=2)
    batcher = Batcher(rt, Recorder())
    first = serve(rt, Submit("a", PROMPT, 16, temperature=0), batcher=batcher)
    second = serve(rt, Submit("b", PROMPT, 16, temperature=0), batcher=batcher)
    assert second.text["b"] == first.text["a"]
    assert second.ends["b"].cached_tokens > 0  # type: ignore[union-attr]


def test_the_same_seed_samples_the_same_answer_and_another_seed_differs(built: Path) -> None:
    def ask(seed: int) -> str:
        request = Submit("s", PROMPT, 24, temperature=1.0, top_k=0, top_p=1.0, min_p=0, seed=seed)
        return serve(runtime(built), request).text["s"]

    assert ask(7) == ask(7)
    assert ask(7) != ask(8)


def test_a_stop_string_ends_the_answer_before_it(built: Path) -> None:
    full = serve(runtime(built), Submit("f", PROMPT, 24, temperature=0)).text["f"]
    stop = full[6:9]
    cut = serve(runtime(built), Submit("c", PROMPT, 24, temperature=0, stop=[stop]))
    assert cut.text["c"] == full[: full.index(stop)]
    assert cut.ends["c"].finish_reason == "stop"  # type: ignore[union-attr]


SCHEMA = (
    '{"type": "object", "properties": {"colour": {"enum": ["red", "green"]}, '
    '"n": {"type": "integer"}}, "required": ["colour", "n"], "additionalProperties": false}'
)


def test_json_schema_output_is_json_that_matches_the_schema(built: Path) -> None:
    recorder = serve(
        runtime(built), Submit("j", PROMPT, 64, temperature=0.8, seed=1, json_schema=SCHEMA)
    )
    answer = json.loads(recorder.text["j"])
    assert set(answer) == {"colour", "n"}
    assert answer["colour"] in ("red", "green") and isinstance(answer["n"], int)
    assert recorder.ends["j"].finish_reason == "stop"  # type: ignore[union-attr]


def test_a_gbnf_grammar_constrains_the_answer(built: Path) -> None:
    grammar = 'root ::= "yes" | "no"'
    recorder = serve(
        runtime(built), Submit("g", PROMPT, 16, temperature=1.0, seed=3, grammar=grammar)
    )
    assert recorder.text["g"] in ("yes", "no")


def test_a_schema_that_cannot_be_used_is_refused_with_the_reason(built: Path) -> None:
    request = Submit("bad", PROMPT, 8, json_schema='{"type": "no-such-type"}')
    end = serve(runtime(built), request).ends["bad"]
    assert isinstance(end, Failed) and end.code == "invalid_request_error"
    assert "JSON schema cannot be used" in end.error


# --- the hand-built decoder against NumPy ------------------------------------------------


class NumpyDecoder:
    """The hand-built graph (helpers.tiny_onnx) computed in NumPy, with its own KV cache."""

    def __init__(self, folder: Path, n_layer: int = 2, n_head: int = 4) -> None:
        graph = onnx.load(str(folder / "model.onnx")).graph
        self.w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
        self.n_layer, self.n_head = n_layer, n_head
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        width = self.w["lm_head"].shape[0] // self.n_head
        self.keys = [np.zeros((self.n_head, 0, width)) for _ in range(self.n_layer)]
        self.values = [np.zeros((self.n_head, 0, width)) for _ in range(self.n_layer)]

    @staticmethod
    def norm(x: np.ndarray) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5)

    def step(self, ids: list[int]) -> np.ndarray:
        """Feed tokens after the cached ones; the last position's logits."""
        w, heads = self.w, self.n_head
        past = self.keys[0].shape[1]
        positions = np.arange(past, past + len(ids))
        x = w["embed_tokens"][ids] + w["embed_positions"][positions]
        size = x.shape[1] // heads
        split = lambda m: m.reshape(len(ids), heads, size).transpose(1, 0, 2)  # noqa: E731
        for layer in range(self.n_layer):
            h = self.norm(x)
            q, k, v = (split(h @ w[f"l{layer}.{p}"]) for p in ("q", "k", "v"))
            self.keys[layer] = np.concatenate([self.keys[layer], k], axis=1)
            self.values[layer] = np.concatenate([self.values[layer], v], axis=1)
            scores = q @ self.keys[layer].transpose(0, 2, 1) / np.sqrt(size)
            allowed = np.arange(past + len(ids))[None, :] <= positions[:, None]
            scores = np.where(allowed[None], scores, -1e9)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attended = (scores / scores.sum(-1, keepdims=True)) @ self.values[layer]
            x = x + attended.transpose(1, 0, 2).reshape(len(ids), -1) @ w[f"l{layer}.o"]
            up = self.norm(x) @ w[f"l{layer}.up"]
            x = x + (up / (1 + np.exp(-up))) @ w[f"l{layer}.down"]
        return (self.norm(x) @ w["lm_head"])[-1]


def test_logits_equal_a_numpy_forward_pass_step_by_step_with_the_cache(hand_built: Path) -> None:
    rt = runtime(hand_built)
    assert not rt.layout.group_query_attention
    reference = NumpyDecoder(hand_built)
    prompt_ids = rt.tokenize(PROMPT)
    compared = []
    sample = rt.sample

    def check(sampler: object, index: int) -> int:
        ours = rt.logits_at(index)
        fed = prompt_ids if not compared else [compared[-1][0]]
        theirs = reference.step(fed)
        token = sample(sampler, index)  # type: ignore[arg-type]
        compared.append((token, float(np.abs(ours - theirs).max())))
        return token

    rt.sample = check  # type: ignore[method-assign]
    rt.eos = set()
    batcher = Batcher(rt, Recorder())
    serve(rt, Submit("n", PROMPT, 12, temperature=0), batcher=batcher)
    assert len(compared) == 12
    assert max(error for _, error in compared) < 1e-4
    # A second request reuses the first one's prompt KV: still the same logits.
    reference.reset()
    compared.clear()
    end = serve(rt, Submit("m", PROMPT, 6, temperature=0), batcher=batcher).ends["m"]
    assert end.cached_tokens > 0  # type: ignore[union-attr]
    assert max(error for _, error in compared) < 1e-4


def test_a_prompt_continuing_a_cached_prefix_answers_as_if_computed_whole(built: Path) -> None:
    # The second prompt shares only its start with the first: its rest is fed as one chunk
    # after a cached past (GroupQueryAttention's "subsequent prompt"), not token by token.
    shared = f"{BOS}<｜User｜>hello there, the answer is"
    rt = runtime(built, slots=2)
    batcher = Batcher(rt, Recorder())
    serve(rt, Submit("a", shared + " one<｜Assistant｜>", 4, temperature=0), batcher=batcher)
    second = Submit("b", shared + " another thing entirely<｜Assistant｜>", 16, temperature=0)
    reused = serve(rt, second, batcher=batcher)
    fresh = serve(runtime(built), second)
    assert reused.ends["b"].cached_tokens > 5  # type: ignore[union-attr]
    assert reused.text["b"] == fresh.text["b"]


def test_long_prompts_are_fed_in_chunks_with_the_same_answer(built: Path, monkeypatch) -> None:
    from appliance.engine.worker import onnxrt

    prompt = f"{BOS}<｜User｜>{'the answer ' * 12}<｜Assistant｜>"
    whole = serve(runtime(built), Submit("w", prompt, 12, temperature=0)).text["w"]
    monkeypatch.setattr(onnxrt, "PREFILL_CHUNK", 7)
    chunked = serve(runtime(built), Submit("c", prompt, 12, temperature=0)).text["c"]
    assert chunked == whole
