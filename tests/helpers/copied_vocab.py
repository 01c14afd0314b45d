"""A tiny random-weight `llama` GGUF carrying another GGUF file's exact vocabulary.

Test helper only (imported as `helpers.copied_vocab`); imports numpy, the `gguf` library and
`helpers.tiny_gguf`, nothing from the appliance. The tokenizer metadata (tokens, scores, types,
merges, special token ids, the chat template) is copied key by key from the source file, so the
result is a draft model candidate for it: the same token ids mean the same text, while the
random weights guess almost nothing right. The embedding and output tables hold one row per
token, so a 49,152-token vocabulary makes a file of a few MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import (
    GGMLQuantizationType,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
    LlamaFileType,
    TokenType,
)
from gguf.quants import quantize

from helpers.tiny_gguf import TinyShape, _dense_layers, add_shape

__all__ = ["write_tiny_with_vocabulary_of"]


def write_tiny_with_vocabulary_of(
    source: Path, path: Path, *, seed: int = 0, padding: int = 0
) -> Path:
    """Write a 2-layer, 64-wide `llama` model with `source`'s tokenizer to `path`; `padding`
    unused `[PAD…]` entries are added after the tokens, as converters pad a vocabulary to the
    embedding table of a larger model of the same family."""
    reader = GGUFReader(source)
    n_real = len(reader.fields["tokenizer.ggml.tokens"].data)
    n_vocab = n_real + padding
    padded = {
        "tokenizer.ggml.tokens": [f"[PAD{n_real + i}]" for i in range(padding)],
        "tokenizer.ggml.scores": [0.0] * padding,
        "tokenizer.ggml.token_type": [int(TokenType.UNUSED)] * padding,
    }
    shape = TinyShape(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, context_length=8192)
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(path, "llama")
    writer.add_name("Tiny random llama with a copied vocabulary")
    add_shape(writer, shape, n_vocab, LlamaFileType.MOSTLY_Q8_0)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            values = field.contents() + padded.get(key, [])
            writer.add_key_value(key, values, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), kind)

    def tensor(name: str, *numpy_shape: int) -> None:
        weights = (rng.standard_normal(numpy_shape) * 0.05).astype(np.float32)
        if len(numpy_shape) >= 2 and numpy_shape[-1] % 32 == 0:
            q8 = GGMLQuantizationType.Q8_0
            writer.add_tensor(name, quantize(weights, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, weights)

    def norm(name: str, size: int) -> None:
        writer.add_tensor(name, np.ones(size, dtype=np.float32))

    tensor("token_embd.weight", n_vocab, shape.n_embd)
    _dense_layers(writer, shape, "llama", tensor, norm)
    norm("output_norm.weight", shape.n_embd)
    tensor("output.weight", n_vocab, shape.n_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
