"""Tiny random-weight GGUF models for tests: `llama`, `qwen2` and `deepseek2` (MLA + MoE).

Test helper only (imported as `helpers.tiny_gguf`, with `tests/` on pytest's pythonpath); imports
numpy, the `gguf` library and `helpers.deepseek_vocab`, nothing from the appliance, so it cannot
hide an appliance bug.

Each file is a real model of its architecture as llama.cpp loads it (R1-Distill-Llama, R1-Distill-
Qwen, DeepSeek V2/V3/R1), with the DeepSeek R1 vocabulary, special tokens and chat template.
Weights are random, so the text is noise. Matrices whose innermost dimension (ggml's ne0, numpy's
last axis) is a multiple of 32 are stored in the requested quantization (Q8_0, Q4_0 or F16: the
block size is 32); the rest (norms, biases, narrow matrices) stay F32, as real converters do.
A few hundred KB each, written in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import ExpertGatingFuncType, GGMLQuantizationType, GGUFWriter, LlamaFileType
from gguf.quants import quantize

from helpers.deepseek_vocab import (
    BOS,
    DEEPSEEK_R1_TEMPLATE,
    EOS,
    vocabulary,
)

__all__ = [
    "BOS",
    "DEEPSEEK_R1_TEMPLATE",
    "EOS",
    "QUANTS",
    "TinyShape",
    "write_tiny_deepseek2",
    "write_tiny_llama",
    "write_tiny_model",
    "write_tiny_qwen2",
]

QUANTS = {
    "Q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "Q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "F16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
}


@dataclass(frozen=True)
class TinyShape:
    """Hyperparameters of a tiny model; the deepseek2 ones follow deepseek.md section 1.2."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    context_length: int = 4096
    # deepseek2 only: MLA ranks and head parts, and the MoE layout.
    q_lora_rank: int = 32
    kv_lora_rank: int = 32
    qk_rope_head_dim: int = 16
    qk_nope_head_dim: int = 16
    v_head_dim: int = 16
    n_expert: int = 4
    n_expert_used: int = 2
    n_expert_shared: int = 1
    n_ff_expert: int = 64
    leading_dense_blocks: int = 1


def write_tiny_llama(
    path: Path,
    *,
    chat_template: str | None = DEEPSEEK_R1_TEMPLATE,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    context_length: int = 512,
    name: str = "Tiny DeepSeek-R1 Llama (random weights)",
    seed: int = 0,
    quant: str = "Q8_0",
) -> Path:
    """Write a random-weight `llama` GGUF with a DeepSeek R1 vocabulary to `path`; return `path`.

    `chat_template=None` leaves `tokenizer.chat_template` out. Pass another `seed` for a file
    with the same shape but different bytes (a different sha256).
    """
    shape = TinyShape(
        n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, n_ff=n_ff,
        context_length=context_length,
    )  # fmt: skip
    return write_tiny_model(
        path, "llama", quant=quant, shape=shape, chat_template=chat_template, name=name, seed=seed
    )


def write_tiny_qwen2(path: Path, *, quant: str = "Q8_0", seed: int = 0) -> Path:
    return write_tiny_model(path, "qwen2", quant=quant, seed=seed)


def write_tiny_deepseek2(path: Path, *, quant: str = "Q8_0", seed: int = 0) -> Path:
    return write_tiny_model(path, "deepseek2", quant=quant, seed=seed)


def write_tiny_model(
    path: Path,
    architecture: str,
    *,
    quant: str = "Q8_0",
    shape: TinyShape | None = None,
    chat_template: str | None = DEEPSEEK_R1_TEMPLATE,
    name: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-weight GGUF of `architecture` (`llama`, `qwen2`, `deepseek2`)."""
    if architecture not in ("llama", "qwen2", "deepseek2"):
        raise ValueError(f"no tiny model for architecture {architecture!r}")
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QUANTS)}")
    shape = shape or TinyShape()
    s = shape
    if s.n_embd % s.n_head or s.n_head % s.n_head_kv:
        raise ValueError("n_embd must divide by n_head, and n_head by n_head_kv")
    path = Path(path)
    tokens, token_types, merges = vocabulary()
    tensor_type, file_type = QUANTS[quant]
    rng = np.random.default_rng(seed)

    writer = GGUFWriter(path, architecture)
    writer.add_name(name or f"Tiny DeepSeek {architecture} {quant} (random weights)")
    add_shape(writer, s, len(tokens), file_type)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if architecture == "qwen2" else "deepseek-v3")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def tensor(name: str, *numpy_shape: int) -> None:
        # numpy shape is ggml's reversed: the last axis is ggml's innermost ne0.
        weights = (rng.standard_normal(numpy_shape) * 0.05).astype(np.float32)
        if len(numpy_shape) >= 2 and numpy_shape[-1] % 32 == 0:
            writer.add_tensor(name, quantize(weights, tensor_type), raw_dtype=tensor_type)
        else:
            writer.add_tensor(name, weights)

    def norm(name: str, size: int) -> None:
        writer.add_tensor(name, np.ones(size, dtype=np.float32))

    tensor("token_embd.weight", len(tokens), s.n_embd)
    if architecture == "deepseek2":
        _deepseek2_layers(writer, s, tensor, norm)
    else:
        _dense_layers(writer, s, architecture, tensor, norm)
    norm("output_norm.weight", s.n_embd)
    tensor("output.weight", len(tokens), s.n_embd)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def add_shape(writer: GGUFWriter, s: TinyShape, n_vocab: int, file_type: LlamaFileType) -> None:
    """The hyperparameters every tiny model states, whatever its vocabulary."""
    writer.add_context_length(s.context_length)
    writer.add_embedding_length(s.n_embd)
    writer.add_block_count(s.n_layer)
    writer.add_feed_forward_length(s.n_ff)
    writer.add_head_count(s.n_head)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(file_type)


def _dense_layers(writer: GGUFWriter, s: TinyShape, arch: str, tensor, norm) -> None:  # type: ignore[no-untyped-def]
    head_dim = s.n_embd // s.n_head
    n_kv = head_dim * s.n_head_kv
    writer.add_head_count_kv(s.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    for layer in range(s.n_layer):
        p = f"blk.{layer}"
        norm(f"{p}.attn_norm.weight", s.n_embd)
        tensor(f"{p}.attn_q.weight", s.n_embd, s.n_embd)
        tensor(f"{p}.attn_k.weight", n_kv, s.n_embd)
        tensor(f"{p}.attn_v.weight", n_kv, s.n_embd)
        if arch == "qwen2":  # Qwen2 has q/k/v biases; llama.cpp refuses a qwen2 file without
            tensor(f"{p}.attn_q.bias", s.n_embd)
            tensor(f"{p}.attn_k.bias", n_kv)
            tensor(f"{p}.attn_v.bias", n_kv)
        tensor(f"{p}.attn_output.weight", s.n_embd, s.n_embd)
        norm(f"{p}.ffn_norm.weight", s.n_embd)
        tensor(f"{p}.ffn_gate.weight", s.n_ff, s.n_embd)
        tensor(f"{p}.ffn_up.weight", s.n_ff, s.n_embd)
        tensor(f"{p}.ffn_down.weight", s.n_embd, s.n_ff)


def _deepseek2_layers(writer: GGUFWriter, s: TinyShape, tensor, norm) -> None:  # type: ignore[no-untyped-def]
    """MLA attention (split k_b/v_b, the post-April-2025 layout) and DeepSeek-V3-style MoE."""
    qk_head = s.qk_nope_head_dim + s.qk_rope_head_dim
    # MLA is stored as MQA with one wide KV head (convert_hf_to_gguf.py, deepseek.md 1.3).
    writer.add_head_count_kv(1)
    writer.add_key_length(s.kv_lora_rank + s.qk_rope_head_dim)
    writer.add_value_length(s.kv_lora_rank)
    writer.add_key_length_mla(qk_head)
    writer.add_value_length_mla(s.v_head_dim)
    writer.add_q_lora_rank(s.q_lora_rank)
    writer.add_kv_lora_rank(s.kv_lora_rank)
    writer.add_rope_dimension_count(s.qk_rope_head_dim)
    writer.add_leading_dense_block_count(s.leading_dense_blocks)
    writer.add_expert_count(s.n_expert)
    writer.add_expert_used_count(s.n_expert_used)
    writer.add_expert_shared_count(s.n_expert_shared)
    writer.add_expert_feed_forward_length(s.n_ff_expert)
    writer.add_expert_weights_scale(2.5)
    writer.add_expert_weights_norm(True)
    writer.add_expert_gating_func(ExpertGatingFuncType.SIGMOID)  # as V3 and R1
    n_shared_ff = s.n_ff_expert * s.n_expert_shared
    for layer in range(s.n_layer):
        p = f"blk.{layer}"
        norm(f"{p}.attn_norm.weight", s.n_embd)
        tensor(f"{p}.attn_q_a.weight", s.q_lora_rank, s.n_embd)
        norm(f"{p}.attn_q_a_norm.weight", s.q_lora_rank)
        tensor(f"{p}.attn_q_b.weight", s.n_head * qk_head, s.q_lora_rank)
        tensor(f"{p}.attn_kv_a_mqa.weight", s.kv_lora_rank + s.qk_rope_head_dim, s.n_embd)
        norm(f"{p}.attn_kv_a_norm.weight", s.kv_lora_rank)
        tensor(f"{p}.attn_k_b.weight", s.n_head, s.kv_lora_rank, s.qk_nope_head_dim)
        tensor(f"{p}.attn_v_b.weight", s.n_head, s.v_head_dim, s.kv_lora_rank)
        tensor(f"{p}.attn_output.weight", s.n_embd, s.n_head * s.v_head_dim)
        norm(f"{p}.ffn_norm.weight", s.n_embd)
        if layer < s.leading_dense_blocks:
            tensor(f"{p}.ffn_gate.weight", s.n_ff, s.n_embd)
            tensor(f"{p}.ffn_up.weight", s.n_ff, s.n_embd)
            tensor(f"{p}.ffn_down.weight", s.n_embd, s.n_ff)
            continue
        # The router stays F32, as converters leave it.
        writer.add_tensor(f"{p}.ffn_gate_inp.weight", np.zeros((s.n_expert, s.n_embd), np.float32))
        norm(f"{p}.exp_probs_b.bias", s.n_expert)
        tensor(f"{p}.ffn_gate_exps.weight", s.n_expert, s.n_ff_expert, s.n_embd)
        tensor(f"{p}.ffn_up_exps.weight", s.n_expert, s.n_ff_expert, s.n_embd)
        tensor(f"{p}.ffn_down_exps.weight", s.n_expert, s.n_embd, s.n_ff_expert)
        tensor(f"{p}.ffn_gate_shexp.weight", n_shared_ff, s.n_embd)
        tensor(f"{p}.ffn_up_shexp.weight", n_shared_ff, s.n_embd)
        tensor(f"{p}.ffn_down_shexp.weight", s.n_embd, n_shared_ff)
