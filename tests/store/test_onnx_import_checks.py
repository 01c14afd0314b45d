"""Importing an ONNX folder checks that the ONNX engine can serve it, and refuses it with the
reason when not (at import, not at the first request); a builder-made folder imports whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import helper

from appliance.errors import ModelFormatError
from appliance.records import ModelFormat
from appliance.store import ModelStore
from appliance.store.importing import import_path
from helpers.builder_onnx import builder_onnx_model
from helpers.tiny_onnx import write_tiny_onnx


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = ModelStore(tmp_path / "state")
    yield store
    store.close()


def edit_genai(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = folder / "genai_config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def test_a_builder_made_model_imports_as_int4_with_its_chat_template(store, tmp_path) -> None:
    folder = tmp_path / "built"
    shutil.copytree(builder_onnx_model(), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]  # today's builder leaves it in chat_template.jinja only
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    model = import_path(store, folder, "built").model
    assert model.format == ModelFormat.ONNX
    assert (model.architecture, model.quantization) == ("llama", "int4")
    assert model.chat_template and "<｜Assistant｜>" in model.chat_template


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "genai_config.json").unlink(), "no genai_config.json"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
        (lambda f: edit_genai(f, lambda c: c["model"].update(vision={"filename": "v.onnx"})),
         "multi-graph model (vision)"),
        (lambda f: edit_genai(f, lambda c: c["model"]["decoder"]["inputs"].update(
            past_key_names="cache.%d.k")), "lacks the KV cache tensors"),
        (lambda f: edit_genai(f, lambda c: c["model"]["decoder"].pop("num_hidden_layers")),
         "num_hidden_layers is missing"),
    ],
)  # fmt: skip
def test_a_folder_the_engine_cannot_serve_is_refused_with_the_reason(
    store, tmp_path, damage, reason
) -> None:
    folder = write_tiny_onnx(tmp_path / "tiny")
    damage(folder)
    with pytest.raises(ModelFormatError, match="cannot serve this ONNX model") as caught:
        import_path(store, folder, "tiny")
    assert reason in str(caught.value)
    assert store.list() == []


def test_an_operator_onnxruntime_does_not_know_is_refused_by_name(store, tmp_path) -> None:
    folder = write_tiny_onnx(tmp_path / "tiny")
    model = onnx.load(str(folder / "model.onnx"))
    model.graph.node.append(helper.make_node("Frobnicate", ["logits"], ["unused"], domain="acme"))
    model.opset_import.append(helper.make_opsetid("acme", 1))
    onnx.save(model, folder / "model.onnx")
    with pytest.raises(
        ModelFormatError, match=r"operators this onnxruntime does not implement: acme\.Frobnicate"
    ):
        import_path(store, folder, "tiny")
