"""The onnxruntime-genai decoder folder layout: what the ONNX engine needs to know to drive it.

One reader shared by the store (which refuses a folder it cannot serve at import, with the
reason) and the engine worker (which loads what was accepted). A leaf: imports `onnx` lazily
and nothing of ours, so both sides may use it without crossing the import contracts.

A folder is servable when `genai_config.json` describes one decoder graph (`model.decoder`),
that graph takes `input_ids` and `attention_mask` (and maybe `position_ids`), has a
`past_key_values.N.key/value` input and a `present.N.key/value` output per layer, gives
`logits`, uses only operators this onnxruntime knows, and the folder has a `tokenizer.json`.
Graphs whose attention is `GroupQueryAttention` keep a per-row sequence length, so the engine
batches sequences of different lengths into one run over a shared KV buffer; other graphs run
one sequence per call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 16 * 1024 * 1024
# Multi-graph pipelines (vision, speech, encoder-decoder) need more than a decoder loop.
_PIPELINE_SECTIONS = ("vision", "speech", "embedding", "encoder", "encoder_decoder_init")
_KV_TYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto FLOAT, FLOAT16


class LayoutError(ValueError):
    """The folder is not an ONNX decoder this engine can serve; the message says why."""


@dataclass
class DecoderLayout:
    """Names, shapes and token ids of one decoder graph, as the engine drives it."""

    folder: Path
    graph: Path
    model_type: str
    layers: int
    kv_heads: int
    head_size: int
    vocab_size: int
    context_length: int
    kv_dtype: str
    """`float32` or `float16`: the element type of the past/present tensors."""
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    position_ids: str | None = None
    logits: str = "logits"
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"
    group_query_attention: bool = False
    """Attention keeps per-row lengths (seqlens_k): rows of different lengths share one run."""
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    operators: dict[str, int] = field(default_factory=dict)

    def kv_names(self) -> list[tuple[str, str]]:
        """(past input, present output) for every layer, keys then values."""
        names = []
        for layer in range(self.layers):
            names.append((self.past_key % layer, self.present_key % layer))
            names.append((self.past_value % layer, self.present_value % layer))
        return names


def read_layout(folder: Path, *, check_operators: bool = True) -> DecoderLayout:
    """Read and check a model folder; LayoutError naming what is missing or unsupported."""
    folder = Path(folder)
    config = _json(folder / "genai_config.json")
    if not config:
        raise LayoutError(
            f"{folder}: no genai_config.json; the ONNX engine serves onnxruntime-genai model "
            "folders (made by `python -m onnxruntime_genai.models.builder`)"
        )
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("decoder"), dict):
        raise LayoutError(f"{folder}/genai_config.json has no model.decoder section")
    pipeline = [name for name in _PIPELINE_SECTIONS if name in model]
    if pipeline:
        raise LayoutError(
            f"{folder}: a multi-graph model ({', '.join(pipeline)}); only text decoders "
            "(one decoder graph) can be served"
        )
    decoder = model["decoder"]
    if "pipeline" in decoder:
        raise LayoutError(f"{folder}: a decoder split into a pipeline of graphs is not supported")
    graph_path = folder / str(decoder.get("filename") or "model.onnx")
    if not graph_path.is_file():
        raise LayoutError(f"{folder}: the decoder graph {graph_path.name} is missing")
    if not (folder / "tokenizer.json").is_file():
        raise LayoutError(
            f"{folder}: no tokenizer.json; the engine tokenizes with the Hugging Face "
            "`tokenizers` format"
        )
    inputs = decoder.get("inputs") if isinstance(decoder.get("inputs"), dict) else {}
    outputs = decoder.get("outputs") if isinstance(decoder.get("outputs"), dict) else {}
    eos = model.get("eos_token_id")
    eos_ids = (
        [int(t) for t in eos] if isinstance(eos, list) else [int(eos)] if eos is not None else []
    )
    layout = DecoderLayout(
        folder=folder,
        graph=graph_path,
        model_type=str(model.get("type") or "decoder"),
        layers=_int(decoder, "num_hidden_layers", folder),
        kv_heads=int(
            decoder.get("num_key_value_heads") or _int(decoder, "num_attention_heads", folder)
        ),
        head_size=_int(decoder, "head_size", folder),
        vocab_size=int(model.get("vocab_size") or 0),
        context_length=int(model.get("context_length") or 0),
        kv_dtype="float32",
        input_ids=str(inputs.get("input_ids", "input_ids")),
        attention_mask=str(inputs.get("attention_mask", "attention_mask")),
        logits=str(outputs.get("logits", "logits")),
        past_key=str(inputs.get("past_key_names", "past_key_values.%d.key")),
        past_value=str(inputs.get("past_value_names", "past_key_values.%d.value")),
        present_key=str(outputs.get("present_key_names", "present.%d.key")),
        present_value=str(outputs.get("present_value_names", "present.%d.value")),
        bos_token_id=model.get("bos_token_id")
        if isinstance(model.get("bos_token_id"), int)
        else None,
        eos_token_ids=eos_ids,
    )
    _check_graph(layout, str(inputs.get("position_ids", "position_ids")), check_operators)
    return layout


def _check_graph(layout: DecoderLayout, position_ids: str, check_operators: bool) -> None:
    import onnx

    try:
        model = onnx.load(str(layout.graph), load_external_data=False)
    except Exception as error:  # protobuf raises several kinds
        raise LayoutError(f"{layout.graph}: not a readable ONNX graph ({error})") from None
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name for o in graph.output}
    name = layout.graph.name
    if "inputs_embeds" in inputs and layout.input_ids not in inputs:
        raise LayoutError(
            f"{name} takes inputs_embeds, not input_ids (built with exclude_embeds); "
            "rebuild it with its embedding layer"
        )
    for needed in (layout.input_ids, layout.attention_mask):
        if needed not in inputs:
            raise LayoutError(f"{name} has no {needed!r} input; inputs are {sorted(inputs)}")
    if layout.logits not in outputs:
        raise LayoutError(
            f"{name} has no {layout.logits!r} output (built with exclude_lm_head?); "
            f"outputs are {sorted(outputs)}"
        )
    missing = [
        n for pair in layout.kv_names() for n, have in zip(pair, (inputs, outputs), strict=True)
        if n not in have
    ]  # fmt: skip
    if missing:
        raise LayoutError(
            f"{name} lacks the KV cache tensors genai_config.json names ({', '.join(missing[:4])}"
            f"{'…' if len(missing) > 4 else ''}); a decoder without a KV cache cannot be served"
        )
    layout.position_ids = position_ids if position_ids in inputs else None
    known = {layout.input_ids, layout.attention_mask, layout.position_ids}
    extra = [n for n in inputs if n not in known and not n.startswith(_prefix(layout))]
    if extra:
        raise LayoutError(f"{name} has inputs this engine does not feed: {', '.join(extra)}")
    past = inputs[layout.past_key % 0].type.tensor_type
    if past.elem_type not in _KV_TYPES:
        raise LayoutError(f"{name}: KV cache of element type {past.elem_type} is not supported")
    layout.kv_dtype = _KV_TYPES[past.elem_type]
    dims = [d.dim_value for d in past.shape.dim]
    if len(dims) != 4:
        raise LayoutError(f"{name}: the KV cache must be [batch, heads, length, head_size]")
    if (dims[1] and dims[1] != layout.kv_heads) or (dims[3] and dims[3] != layout.head_size):
        raise LayoutError(
            f"{name}: KV cache shape {dims} disagrees with genai_config.json "
            f"({layout.kv_heads} KV heads of {layout.head_size})"
        )
    ops: dict[str, int] = {}
    for node in graph.node:
        key = (
            f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        )
        ops[key] = ops.get(key, 0) + 1
    layout.operators = ops
    layout.group_query_attention = "com.microsoft:GroupQueryAttention" in ops
    if not layout.vocab_size:
        dims = [d.dim_value for d in next(o for o in graph.output if o.name == layout.logits)
                .type.tensor_type.shape.dim]  # fmt: skip
        layout.vocab_size = dims[-1] if dims else 0
    if check_operators:
        unknown = unknown_operators(model)
        if unknown:
            raise LayoutError(
                f"{name} uses operators this onnxruntime does not implement: "
                f"{', '.join(sorted(unknown))}; upgrade onnxruntime or export with a lower opset"
            )


def unknown_operators(model: Any) -> set[str]:
    """Operators in the graph that onnxruntime has no schema for (so no kernel either)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    known = {(s.domain or "", s.name) for s in ort_state.get_all_operator_schema()}
    return {
        f"{node.domain + '.' if node.domain else ''}{node.op_type}"
        for node in model.graph.node
        if (node.domain if node.domain != "ai.onnx" else "", node.op_type) not in known
    }


def _prefix(layout: DecoderLayout) -> str:
    return layout.past_key.split("%")[0]


def _int(section: dict[str, Any], key: str, folder: Path) -> int:
    value = section.get(key)
    if not isinstance(value, int) or value <= 0:
        raise LayoutError(f"{folder}/genai_config.json: model.decoder.{key} is missing")
    return value


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise LayoutError(f"{path}: {path.stat().st_size:,} bytes is too large for a config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise LayoutError(f"{path}: not valid JSON ({error})") from None
    return data if isinstance(data, dict) else {}
