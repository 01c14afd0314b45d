"""The test helpers' own tests (not the store's): the tiny GGUFs they write are models llama.cpp
really loads, tokenizes and runs, so tests built on them test something real."""

from __future__ import annotations

import time

import pytest

from appliance.config import Config
from appliance.runtime import activate_in_process
from helpers.tiny_gguf import BOS, write_tiny_llama, write_tiny_model

# In-process llama.cpp goes through the daemon's choice: the self-tested CPU variant.
activate_in_process(Config())
import llama_cpp  # noqa: E402  (after activation: its libraries come from the runtime build)


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory):
    path = write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)


def test_tiny_llama_generates_tokens_in_llama_cpp(llm):
    out = llm.create_completion("Hello there", max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] > 0


def test_deepseek_special_tokens_are_single_tokens(llm):
    for token in (BOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"):
        assert len(llm.tokenize(token.encode(), add_bos=False, special=True)) == 1, token


def test_chat_completion_uses_the_embedded_deepseek_template(llm):
    assert llm.metadata["tokenizer.chat_template"].endswith(
        "{{'<｜Assistant｜><think>\\n'}}{% endif %}"
    )
    out = llm.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert out["choices"][0]["message"]["role"] == "assistant"


def test_merges_are_used_by_the_tokenizer(llm):
    # "the" is two merges deep (t h e -> "he" -> "Ġthe"): fewer tokens than bytes.
    assert len(llm.tokenize(b" the", add_bos=False)) == 1


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "deepseek2"])
def test_every_tiny_architecture_and_quant_loads_and_generates_in_llama_cpp(tmp_path, arch, quant):
    started = time.monotonic()
    path = write_tiny_model(tmp_path / f"{arch}-{quant}.gguf", arch, quant=quant)
    assert time.monotonic() - started < 5, "tiny models must build in seconds"
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)
    assert llm.metadata["general.architecture"] == arch
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "hello"}], max_tokens=4, temperature=0.0
    )
    assert out["usage"]["completion_tokens"] > 0
    for token in (BOS, "<｜User｜>", "<｜Assistant｜>", "<think>"):
        assert len(llm.tokenize(token.encode(), add_bos=False, special=True)) == 1


def test_tiny_deepseek2_is_in_the_mla_layout_with_experts(tmp_path):
    llm = llama_cpp.Llama(
        model_path=str(write_tiny_model(tmp_path / "ds2.gguf", "deepseek2")), n_ctx=64,
        verbose=False,
    )  # fmt: skip
    meta = llm.metadata
    assert meta["deepseek2.attention.key_length_mla"] == "32"
    assert meta["deepseek2.expert_count"] == "4"
    assert meta["deepseek2.leading_dense_block_count"] == "1"
