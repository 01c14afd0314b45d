"""The model the CPU self-test decodes: a small random-weight llama whose matrices cover the
quantization types that have their own CPU kernels (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K).

May import numpy and gguf only. The weights are random, so only the numbers matter: every CPU
variant must compute (nearly) the same logits as the plain x64 one. The matrices are 512 wide,
so K-quants (256-value blocks) and the repacked/AMX paths (which need whole tiles) are used, and
large enough that timing them says something about the variant's kernels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
from gguf.quants import quantize

MODEL_VERSION = 1
"""Bump when the file changes, so cached verdicts are redone."""

N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV = 512, 1536, 4, 8, 4
_Q = GGMLQuantizationType
# One type per matrix of a layer, rotating per layer so that every type meets every shape.
_TYPES = (_Q.Q4_0, _Q.Q4_1, _Q.Q8_0, _Q.Q4_K, _Q.Q6_K)
_K_BLOCK = {_Q.Q4_K: (144, (0, 2), 1e-4), _Q.Q6_K: (210, (208,), 2.5e-5)}
"""Bytes per 256-value block, the offsets of its f16 super-block scales (ggml-common.h
block_q4_K / block_q6_K) and their value: with random 6-bit sub-scales and quants, weights of
about ±0.1, like the other matrices (larger ones make the random network chaotic, and rounding
differences between variants would then look like wrong numbers)."""


def _byte_tokens() -> list[str]:
    # GPT-2's byte-to-unicode mapping: printable bytes map to themselves, the rest above 255.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def _kquant_blocks(rows: int, cols: int, qtype: GGMLQuantizationType, rng: np.random.Generator):
    size, scale_offsets, value = _K_BLOCK[qtype]
    blocks = rng.integers(0, 256, size=(rows, cols // 256, size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    for offset in scale_offsets:  # random bytes could make them inf or NaN
        blocks[:, :, offset : offset + 2] = scale
    return blocks.reshape(rows, -1)


def write_selftest_model(path: Path, seed: int = 1234) -> Path:
    """Write the model to `path` atomically (a cache may be read by several processes)."""
    logging.getLogger("gguf").setLevel(logging.WARNING)  # it narrates every file at INFO
    rng = np.random.default_rng(seed)
    tokens = [*_byte_tokens(), "Ġt", "<s>", "</s>"]
    writer = GGUFWriter(f"{path}.partial.{os.getpid()}", "llama")
    writer.add_name("appliance CPU self-test (random weights)")
    writer.add_context_length(1024)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(LlamaFileType.MOSTLY_Q4_0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 257 + [3, 3])
    writer.add_token_merges(["Ġ t"])  # llama.cpp refuses a BPE vocabulary without merges
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    counter = [0]

    def matrix(name: str, rows: int, cols: int) -> None:
        qtype = _TYPES[counter[0] % len(_TYPES)]
        counter[0] += 1
        if qtype in _K_BLOCK:
            writer.add_tensor(name, _kquant_blocks(rows, cols, qtype, rng), raw_dtype=qtype)
            return
        weights = rng.normal(0, 0.05, size=(rows, cols)).astype(np.float32)
        writer.add_tensor(name, quantize(weights, qtype), raw_dtype=qtype)

    kv = N_EMBD // N_HEAD * N_HEAD_KV
    writer.add_tensor(
        "token_embd.weight", rng.normal(0, 1, (len(tokens), N_EMBD)).astype(np.float32)
    )
    for layer in range(N_LAYER):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        matrix(f"{prefix}.attn_q.weight", N_EMBD, N_EMBD)
        matrix(f"{prefix}.attn_k.weight", kv, N_EMBD)
        matrix(f"{prefix}.attn_v.weight", kv, N_EMBD)
        matrix(f"{prefix}.attn_output.weight", N_EMBD, N_EMBD)
        matrix(f"{prefix}.ffn_gate.weight", N_FF, N_EMBD)
        matrix(f"{prefix}.ffn_up.weight", N_FF, N_EMBD)
        matrix(f"{prefix}.ffn_down.weight", N_EMBD, N_FF)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    output = rng.normal(0, 0.05, (len(tokens), N_EMBD)).astype(np.float32)
    writer.add_tensor("output.weight", quantize(output, _Q.Q8_0), raw_dtype=_Q.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(f"{path}.partial.{os.getpid()}", path)
    return path
