"""ONNX model folders (onnxruntime-genai layout): reading their metadata and importing them.

Imports `appliance.errors`, `appliance.records`, `appliance.onnx_layout` (whose checks refuse a
folder the ONNX engine could not serve), the store's own modules and (lazily) `onnx`.

A folder holds one or more `.onnx` graphs, maybe external weight files (`model.onnx.data`),
`genai_config.json` (model type, context length, token ids) and the tokenizer files
(`tokenizer.json`, `tokenizer_config.json` with the chat template). The graph is read without
its external weights; the quantization is named from the graph: `MatMulNBits` nodes mean
int4 (or their `bits`), `MatMulInteger`/`QLinearMatMul`/`DequantizeLinear` int8, otherwise the
commonest element type of the weight initializers (fp32, fp16).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import ModelFormatError, NotFound, UsageError
from appliance.records import ModelFormat
from appliance.store import blobs
from appliance.store.blobs import Progress
from appliance.store.gguf_meta import MAX_SPECIAL_TOKENS, ModelMetadata
from appliance.store.names import check_model_name, default_model_name

if TYPE_CHECKING:
    from appliance.store.staging import ImportResult, Staging

# Protobuf refuses messages over 2 GiB; bigger graphs keep their weights in external files.
MAX_GRAPH_BYTES = 2 * 1024**3
# A genai_config.json or tokenizer_config.json is a few KB; refuse to parse a huge one.
MAX_JSON_BYTES = 16 * 1024 * 1024
_INT8_OPS = {"MatMulInteger", "QLinearMatMul", "DequantizeLinear", "DynamicQuantizeMatMul"}


def read_onnx_metadata(folder: Path) -> ModelMetadata:
    """Read an ONNX model folder's metadata; ModelFormatError when it is not one."""
    folder = Path(folder)
    if not folder.exists():
        raise NotFound(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    graphs = sorted(folder.rglob("*.onnx"))
    if not graphs:
        raise ModelFormatError(
            f"{folder}: no .onnx file in this folder; an ONNX model folder holds model.onnx "
            "and genai_config.json"
        )
    _check_servable(folder)
    genai = _json(folder / "genai_config.json")
    tokenizer = _json(folder / "tokenizer_config.json")
    model_cfg = genai.get("model", {}) if isinstance(genai.get("model"), dict) else {}
    ops: collections.Counter[str] = collections.Counter()
    types: collections.Counter[str] = collections.Counter()
    params = 0
    bits: set[int] = set()
    for graph_path in graphs:
        graph = _load_graph(graph_path)
        packed: dict[str, int] = {}  # MatMulNBits weight input -> weights per stored byte
        for node in graph.node:
            ops[node.op_type] += 1
            if node.op_type == "MatMulNBits":
                node_bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
                bits.add(node_bits)
                packed[node.input[1]] = max(1, 8 // node_bits)
        for init in graph.initializer:
            count = 1
            for dim in init.dims:
                count *= int(dim)
            params += count * packed.get(init.name, 1)
            if len(init.dims) >= 2:
                types[_type_name(init.data_type)] += 1
    if ops["MatMulNBits"]:
        quantization = "/".join(f"int{b}" for b in sorted(bits))
    elif any(ops[op] for op in _INT8_OPS):
        quantization = "int8"
    else:
        quantization = types.most_common(1)[0][0] if types else ""
    context = model_cfg.get("context_length")
    template = tokenizer.get("chat_template") or _text(folder / "chat_template.jinja")
    return ModelMetadata(
        architecture=str(model_cfg.get("type") or "onnx"),
        name=folder.name,
        parameter_count=params,
        quantization=quantization,
        context_length=int(context) if isinstance(context, int) else None,
        chat_template=template if isinstance(template, str) and template else None,
        bos_token=_token_text(tokenizer.get("bos_token")),
        eos_token=_token_text(tokenizer.get("eos_token")),
        tensor_types=dict(types.most_common()),
        special_tokens=_special_tokens(tokenizer),
        shape=None,
    )


def import_onnx_dir(
    store: Staging,
    src: Path,
    name: str | None = None,
    *,
    source: str = "",
    progress: Progress | None = None,
    catalog_id: str | None = None,
) -> ImportResult:
    """Copy an ONNX model folder into the store as one folder blob and register it."""
    src = Path(src)
    meta = read_onnx_metadata(src)
    name = check_model_name(name) if name is not None else default_model_name(src)
    files = blobs.folder_files(src)
    total = sum(path.stat().st_size for path in files)
    store.check_room(str(src), total)
    partial = store.new_partial()
    try:
        digests: dict[str, str] = {}
        done = 0
        for path in files:
            rel = path.relative_to(src).as_posix()
            (partial / rel).parent.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size
            digests[rel] = blobs.copy_hashing(path, partial / rel, total, progress, done)
            done += size
        for folder in sorted({p.parent for p in partial.rglob("*")} | {partial}):
            blobs.fsync_dir(folder)
        return store.commit_and_register(
            partial, name, blobs.listing_digest(digests), total, meta,
            source=source or str(src.absolute()), fmt=ModelFormat.ONNX, catalog_id=catalog_id,
        )  # fmt: skip
    except OSError as exc:
        raise store.storage_error(exc, str(src), total) from None
    finally:
        blobs.remove_tree(partial)


def _check_servable(folder: Path) -> None:
    """Refuse at import what the ONNX engine could not serve, with the reason (not at the
    first request): no genai_config.json, a multi-graph pipeline, no KV cache, unknown ops."""
    from appliance.onnx_layout import LayoutError, read_layout

    try:
        read_layout(folder)
    except LayoutError as error:
        raise ModelFormatError(f"cannot serve this ONNX model: {error}") from None


def _text(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
        return None
    try:
        return path.read_text(encoding="utf-8") or None
    except (OSError, UnicodeDecodeError):
        return None


def _load_graph(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    if path.stat().st_size > MAX_GRAPH_BYTES:
        raise ModelFormatError(f"{path}: an ONNX graph over 2 GiB is not a valid protobuf")
    try:
        return onnx.load(str(path), load_external_data=False).graph
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{path}: not a readable ONNX graph ({exc})") from None


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ModelFormatError(f"{path}: {path.stat().st_size:,} bytes is too large for a config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def _type_name(data_type: int) -> str:
    import onnx

    name = onnx.TensorProto.DataType.Name(data_type)
    return {"FLOAT": "fp32", "FLOAT16": "fp16", "BFLOAT16": "bf16"}.get(name, name.lower())


def _token_text(token: Any) -> str:
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return token if isinstance(token, str) else ""


def _special_tokens(tokenizer: dict[str, Any]) -> list[str]:
    added = tokenizer.get("added_tokens_decoder")
    if not isinstance(added, dict):
        return []
    texts = [str(v.get("content")) for v in added.values() if isinstance(v, dict)]
    return texts[:MAX_SPECIAL_TOKENS]
