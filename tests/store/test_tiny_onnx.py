"""The tiny ONNX decoder is a real graph onnxruntime runs, with a KV cache that gives the same
logits as recomputing the whole sequence; the store imports its folder as an ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from appliance.records import ModelFormat
from appliance.store import ModelStore
from appliance.store.importing import import_path
from helpers.deepseek_vocab import BOS, vocabulary
from helpers.tiny_onnx import write_tiny_onnx

N_LAYER, N_HEAD, HEAD = 2, 4, 16


def run(session: ort.InferenceSession, ids: np.ndarray, past: list) -> tuple[np.ndarray, list]:
    total = ids.shape[1] + past[0][0].shape[2]
    feeds = {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64)}
    for layer, (key, value) in enumerate(past):
        feeds[f"past_key_values.{layer}.key"] = key
        feeds[f"past_key_values.{layer}.value"] = value
    out = session.run(None, feeds)
    return out[0], [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(N_LAYER)]


def empty_past() -> list:
    return [(np.zeros((1, N_HEAD, 0, HEAD), np.float32),) * 2 for _ in range(N_LAYER)]


@pytest.fixture(params=["fp32", "int8"])
def folder(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    return write_tiny_onnx(tmp_path / f"tiny-{request.param}", quant=request.param)


def test_cached_decoding_matches_recomputing_the_whole_sequence(folder):
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[263, 5, 70, 80, 90, 100]], dtype=np.int64)
    full, _ = run(session, ids, empty_past())
    _, past = run(session, ids[:, :5], empty_past())
    step, past = run(session, ids[:, 5:], past)
    assert np.allclose(full[0, -1], step[0, -1], atol=1e-5)
    assert past[0][0].shape == (1, N_HEAD, 6, HEAD)


def test_a_greedy_loop_generates_tokens_from_the_vocabulary(folder):
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    tokens, _types, _merges = vocabulary()
    logits, past = run(session, np.array([[tokens.index(BOS), 72, 105]], np.int64), empty_past())
    generated = []
    for _ in range(8):
        nxt = int(logits[0, -1].argmax())
        generated.append(nxt)
        logits, past = run(session, np.array([[nxt]], np.int64), past)
    assert all(0 <= t < len(tokens) for t in generated)


def test_the_folder_carries_genai_config_tokenizer_and_the_deepseek_template(folder):
    genai = json.loads((folder / "genai_config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert genai["model"]["decoder"]["num_hidden_layers"] == N_LAYER
    assert len(tokenizer["model"]["vocab"]) == genai["model"]["vocab_size"]
    assert tokenizer["model"]["merges"], "byte-level BPE needs at least one merge"
    assert config["chat_template"].endswith("{{'<｜Assistant｜><think>\\n'}}{% endif %}")


def test_store_imports_the_folder_with_its_quantization_read_from_the_graph(tmp_path, folder):
    store = ModelStore(tmp_path / "state")
    try:
        model = import_path(store, folder, "tiny-onnx").model
        assert model.format == ModelFormat.ONNX
        assert model.architecture == "tiny_decoder"
        assert model.quantization == ("int8" if folder.name.endswith("int8") else "fp32")
        assert model.context_length == 256 and model.bos_token == BOS
        assert "<think>" in model.special_tokens
        stored = Path(model.path)
        assert stored.is_dir() and (stored / "model.onnx").is_file()
        assert [r.ok for r in store.verify("tiny-onnx")] == [True]
        assert import_path(store, folder, "tiny-onnx").created is False  # same folder: no change
        store.remove("tiny-onnx")
        assert not stored.exists()
    finally:
        store.close()


def test_a_changed_file_inside_a_stored_onnx_folder_fails_verify(tmp_path):
    store = ModelStore(tmp_path / "state")
    try:
        model = import_path(store, write_tiny_onnx(tmp_path / "m"), "m").model
        config = Path(model.path) / "genai_config.json"
        config.chmod(0o644)
        config.write_text(config.read_text().replace("256", "512"))
        [result] = store.verify("m")
        assert not result.ok and "damaged" in result.detail
    finally:
        store.close()
