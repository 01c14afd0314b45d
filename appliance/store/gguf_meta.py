"""Reading a GGUF file's header into `GGUFMetadata`, refusing anything that is not a sound GGUF.

Imports only `appliance.errors` and (lazily) the `gguf` library, so importing the store does not
pull numpy into every process that only checks API keys.

`gguf.GGUFReader` trusts the file: it memory-maps it and walks whatever counts the header
claims, and fails on junk with bare numpy errors ("index 0 is out of bounds"). So we check the
fixed header ourselves first (magic, version, sane counts), bound every read the library makes
to the file's size, and turn whatever it raises into a ModelFormatError naming the file.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ModelFormatError, NotFound, UsageError
from appliance.records import ModelShape

GGUF_MAGIC = b"GGUF"
HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, metadata key/value count
SUPPORTED_VERSIONS = (2, 3)
# The largest real models have a few thousand tensors (R1 671B: ~1,000 per shard) and well
# under a hundred metadata keys; a count beyond this is corruption or a hostile file.
MAX_COUNT = 1_000_000

# Architectures llama.cpp (as vendored by llama-cpp-python 0.3.x) can run that an appliance
# would be offered; anything else is refused at import with a clear line rather than at load.
KNOWN_ARCHITECTURES = frozenset(
    {
        "llama", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "deepseek", "deepseek2", "mistral3",
        "gemma", "gemma2", "gemma3", "phi2", "phi3", "starcoder2", "granite", "glm4", "olmo2",
        "command-r", "internlm2", "minicpm", "exaone", "smollm3", "gpt-oss",
    }
)  # fmt: skip
# A vocabulary has at most a few hundred special tokens (Llama 3: 256 reserved); cap the list.
MAX_SPECIAL_TOKENS = 512
_SPECIAL_TOKEN_TYPES = (3, 4)  # gguf TokenType CONTROL, USER_DEFINED

# What the first bytes say when a file is not GGUF, for an error a person can act on.
_KNOWN_STARTS = [
    (b"PK\x03\x04", "a zip archive; unpack it and import the .gguf inside"),
    (b"\x1f\x8b", "a gzip archive; unpack it first"),
    (b"lmgg", "an old GGML file; convert it to GGUF with llama.cpp"),
    (b"fmgg", "an old GGMF file; convert it to GGUF with llama.cpp"),
    (b"tjgg", "an old GGJT file; convert it to GGUF with llama.cpp"),
    (b"\x08", "perhaps an ONNX protobuf; import the folder that holds it (with genai_config.json)"),
    (b"<", "perhaps an HTML or XML page, such as a failed download"),
    (b"{", "perhaps a JSON file"),
]


@dataclass(frozen=True)
class GGUFMetadata:
    """What the store records about a model, read from its GGUF header (or ONNX directory)."""

    architecture: str
    """`general.architecture`, e.g. `llama`, `qwen2`, `deepseek2`."""
    name: str
    """`general.name` as the converter wrote it; may be empty."""
    parameter_count: int
    """`general.parameter_count` when present, else the sum of the tensors' element counts."""
    quantization: str
    """`general.file_type` as a name (`Q4_K_M`, `Q8_0`, `F16`), else the commonest tensor type."""
    context_length: int | None
    """`<architecture>.context_length`: the context the model was trained for."""
    chat_template: str | None
    """`tokenizer.chat_template` (Jinja), or None when the file carries none."""
    bos_token: str
    eos_token: str
    split_count: int = 1
    """`split.count`: how many files a split GGUF (`-00001-of-00009.gguf`) spans."""
    tensor_types: dict[str, int] = field(default_factory=dict)
    special_tokens: list[str] = field(default_factory=list)
    shape: ModelShape | None = None


ModelMetadata = GGUFMetadata
"""The same record for every format (the ONNX reader fills it too)."""


def read_gguf_metadata(path: Path) -> GGUFMetadata:
    """Read and sanity-check the GGUF header of `path`.

    Raises NotFound when the file does not exist, UsageError when it is a directory or unreadable,
    and ModelFormatError (naming the file and the fault) when it is not a sound GGUF file.
    """
    path = Path(path)
    size = check_gguf_header(path)
    reader = _open_reader(path, size)
    try:
        meta = _extract(reader)
    except ModelFormatError:
        raise
    except Exception as exc:  # a field of an unexpected type, say: the file is at fault
        raise ModelFormatError(f"{path}: unreadable GGUF metadata ({exc})") from None
    if not meta.architecture:
        raise ModelFormatError(f"{path}: the GGUF file names no architecture")
    if meta.architecture not in KNOWN_ARCHITECTURES:
        raise ModelFormatError(
            f"{path}: unknown architecture {meta.architecture!r}; this appliance's llama.cpp "
            f"runs {', '.join(sorted(KNOWN_ARCHITECTURES))}"
        )
    return meta


def check_gguf_header(path: Path) -> int:
    """Check the fixed 24-byte GGUF header without the gguf library; return the file size."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            head = handle.read(HEADER.size)
    except FileNotFoundError:
        raise NotFound(f"model file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a GGUF file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise ModelFormatError(f"{path} is empty, not a GGUF file")
    if not (head[:4] == GGUF_MAGIC or (len(head) < 4 and GGUF_MAGIC.startswith(head))):
        hint = next((why for start, why in _KNOWN_STARTS if head.startswith(start)), "")
        raise ModelFormatError(
            f"{path}: not a GGUF file (starts with {head[:4]!r}, a GGUF file with {GGUF_MAGIC!r})"
            + (f"; it looks like {hint}" if hint else "")
        )
    if len(head) < HEADER.size:
        raise ModelFormatError(
            f"{path}: truncated GGUF file ({size} bytes; the header alone is {HEADER.size})"
        )
    _magic, version, tensor_count, kv_count = HEADER.unpack(head)
    if version & 0xFFFF == 0 and version >> 16:
        raise ModelFormatError(
            f"{path}: a big-endian GGUF file; llama.cpp on this machine reads only little-endian"
        )
    if version not in SUPPORTED_VERSIONS:
        raise ModelFormatError(
            f"{path}: GGUF version {version} is not supported (this appliance reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); reconvert it with a current llama.cpp"
        )
    for what, count in (("tensor count", tensor_count), ("metadata key count", kv_count)):
        if count > MAX_COUNT:
            raise ModelFormatError(
                f"{path}: corrupt GGUF header ({what} {count:,} is absurd; at most "
                f"{MAX_COUNT:,} are accepted)"
            )
    return size


class _Truncated(Exception):
    def __init__(self, end: int) -> None:
        super().__init__(end)
        self.end = end


def _open_reader(path: Path, size: int) -> Any:
    from gguf import GGUFReader

    class BoundedReader(GGUFReader):  # type: ignore[misc]
        """GGUFReader whose every read is checked against the end of the file first."""

        def _get(self, offset: int, dtype: Any, count: int = 1, *args: Any, **kwargs: Any) -> Any:
            import numpy as np

            end = int(offset) + np.dtype(dtype).itemsize * int(count)
            if end > len(self.data):
                raise _Truncated(end)
            return super()._get(offset, dtype, count, *args, **kwargs)

    try:
        return BoundedReader(path)
    except _Truncated as exc:
        raise ModelFormatError(
            f"{path}: truncated GGUF file ({size:,} bytes, but its contents run to byte "
            f"{exc.end:,}); the copy or download is incomplete"
        ) from None
    except MemoryError:
        raise ModelFormatError(f"{path}: corrupt GGUF file (absurd sizes in its header)") from None
    except Exception as exc:
        raise ModelFormatError(f"{path}: damaged GGUF file ({type(exc).__name__}: {exc})") from None


def _extract(reader: Any) -> GGUFMetadata:
    fields = reader.fields

    def value(key: str) -> Any:
        field = fields.get(key)
        if field is None:
            return None
        return field.contents()

    architecture = str(value("general.architecture") or "")
    tokens = fields.get("tokenizer.ggml.tokens")

    def token_text(key: str) -> str:
        token_id = value(key)
        if tokens is None or not isinstance(token_id, int) or not 0 <= token_id < len(tokens.data):
            return ""
        return str(tokens.contents(token_id))

    declared_params = value("general.parameter_count")
    parameter_count = (
        int(declared_params)
        if isinstance(declared_params, int) and declared_params > 0
        else sum(int(tensor.n_elements) for tensor in reader.tensors)
    )
    context_length = value(f"{architecture}.context_length") if architecture else None
    template = value("tokenizer.chat_template")
    split_count = value("split.count")
    return GGUFMetadata(
        architecture=architecture,
        name=str(value("general.name") or ""),
        parameter_count=parameter_count,
        quantization=_quantization(value("general.file_type"), reader.tensors),
        context_length=int(context_length) if isinstance(context_length, int) else None,
        chat_template=template if isinstance(template, str) and template else None,
        bos_token=token_text("tokenizer.ggml.bos_token_id"),
        eos_token=token_text("tokenizer.ggml.eos_token_id"),
        split_count=int(split_count) if isinstance(split_count, int) and split_count > 0 else 1,
        tensor_types=dict(
            collections.Counter(t.tensor_type.name for t in reader.tensors).most_common()
        ),
        special_tokens=_special_tokens(fields),
        shape=_shape(architecture, value, reader.tensors),
    )


def _special_tokens(fields: Any) -> list[str]:
    tokens, types = fields.get("tokenizer.ggml.tokens"), fields.get("tokenizer.ggml.token_type")
    if tokens is None or types is None:
        return []
    import numpy as np

    # token_type is one array part per token: gather them without building 150k Python ints.
    kinds = np.array([types.parts[i][0] for i in types.data], dtype=np.int64)
    wanted = np.flatnonzero(np.isin(kinds, _SPECIAL_TOKEN_TYPES))[:MAX_SPECIAL_TOKENS]
    return [str(tokens.contents(int(i))) for i in wanted if int(i) < len(tokens.data)]


def _shape(architecture: str, value: Any, tensors: list[Any]) -> ModelShape | None:
    """Layer and KV dimensions as llama.cpp derives them (src/llama-model.cpp defaults)."""

    def number(key: str, default: int = 0) -> int:
        found = value(f"{architecture}.{key}")
        return int(found) if isinstance(found, int) else default

    blocks, embd, heads = number("block_count"), number("embedding_length"), 0
    head_counts = value(f"{architecture}.attention.head_count")
    heads = max(head_counts) if isinstance(head_counts, list) and head_counts else 0
    heads = heads or number("attention.head_count")
    if not (blocks and embd and heads):
        return None
    kv_heads = number("attention.head_count_kv", heads)
    head_dim = embd // heads
    layer_bytes = [0] * blocks
    input_bytes = output_bytes = 0
    for tensor in tensors:
        name, size = str(tensor.name), int(tensor.n_bytes)
        if name.startswith("blk."):
            index = name.split(".", 2)[1]
            if index.isdigit() and int(index) < blocks:
                layer_bytes[int(index)] += size
                continue
        if name.startswith("token_embd."):
            input_bytes += size
        else:
            output_bytes += size
    vocab = value("tokenizer.ggml.tokens")
    return ModelShape(
        block_count=blocks,
        embedding_length=embd,
        head_count=heads,
        head_count_kv=kv_heads,
        key_length=number("attention.key_length", head_dim),
        value_length=number("attention.value_length", head_dim),
        key_length_mla=number("attention.key_length_mla"),
        vocab_size=number("vocab_size") or (len(vocab) if isinstance(vocab, list) else 0),
        feed_forward_length=number("feed_forward_length"),
        layer_bytes=layer_bytes,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
    )


def _quantization(file_type: Any, tensors: list[Any]) -> str:
    """Name the file's quantization the way model cards do (`Q4_K_M`, `Q8_0`, `F16`)."""
    import gguf

    file_types = getattr(gguf, "LlamaFileType", None)
    if isinstance(file_type, int) and file_types is not None:
        try:
            name = file_types(file_type).name
        except ValueError:
            name = ""
        if name and name != "GUESSED":
            return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
    # No (known) file type: the commonest type among weight matrices. 1-D tensors (norms,
    # biases) are F32 in every quantization, so counting them would say F32 for all.
    counts = collections.Counter(
        tensor.tensor_type.name for tensor in tensors if len(tensor.shape) >= 2
    ) or collections.Counter(tensor.tensor_type.name for tensor in tensors)
    return counts.most_common(1)[0][0] if counts else ""
