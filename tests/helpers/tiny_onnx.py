"""A tiny random-weight ONNX decoder folder for tests: `write_tiny_onnx(folder)`.

Test helper only; imports numpy, `onnx` and `helpers.deepseek_vocab`, nothing from the appliance.

The graph is a real pre-norm transformer decoder built from standard ONNX ops (opset 17, so
onnxruntime's CPU provider runs it without contrib ops): token + learned position embeddings,
causal multi-head attention with a KV cache, a SiLU MLP, and an LM head. Its inputs and outputs
follow the onnxruntime-genai names (`input_ids`, `attention_mask`, `past_key_values.N.key/value`
-> `logits`, `present.N.key/value`), so the ONNX engine can drive it like a builder-made model:
pass empty pasts (length 0) for the prompt, then feed each `present` back as the next `past`.
`quant="int8"` stores the matrices as int8 behind `DequantizeLinear` (the QDQ layout).

The folder also holds `genai_config.json`, a byte-level BPE `tokenizer.json` and a
`tokenizer_config.json` with DeepSeek R1's chat template and special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from helpers.deepseek_vocab import BOS, DEEPSEEK_R1_TEMPLATE, EOS, vocabulary

OPSET = 17


def write_tiny_onnx(
    folder: Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_ff: int = 128,
    context_length: int = 256,
    quant: str = "fp32",
    seed: int = 0,
) -> Path:
    """Write the model folder (created if needed); return it."""
    if quant not in ("fp32", "int8"):
        raise ValueError("quant must be fp32 or int8")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens, types, merges = vocabulary()
    vocab = len(tokens)
    head = n_embd // n_head
    rng = np.random.default_rng(seed)
    g = _Graph(rng, quant)

    ids, mask = "input_ids", "attention_mask"
    seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const(np.array(1))])
    total_len = g.op("Gather", [g.op("Shape", [mask]), g.const(np.array(1))])
    past_len = g.op("Sub", [total_len, seq_len])
    positions = g.op("Range", [past_len, total_len, g.const(np.array(1))])  # [S]
    key_positions = g.op("Range", [g.const(np.array(0)), total_len, g.const(np.array(1))])
    causal = g.op(  # [S, T]: query i may see key j when j <= its position
        "LessOrEqual",
        [
            g.op("Unsqueeze", [key_positions, g.const(np.array([0]))]),
            g.op("Unsqueeze", [positions, g.const(np.array([1]))]),
        ],
    )
    padding = g.op(
        "Unsqueeze", [g.op("Cast", [mask], to=TensorProto.BOOL), g.const(np.array([1, 2]))]
    )
    allowed = g.op("And", [causal, padding])  # [B, 1, S, T]

    x = g.op(
        "Add",
        [
            g.op("Gather", [g.weight("embed_tokens", (vocab, n_embd), quantize=False), ids]),
            g.op("Gather", [g.weight("embed_positions", (context_length, n_embd)), positions]),
        ],
    )
    to_heads = g.const(np.array([0, 0, n_head, head]))
    for layer in range(n_layer):
        h = g.norm(x, n_embd, f"l{layer}.attn_norm")
        q, k, v = (
            g.op(
                "Transpose",
                [g.op("Reshape", [g.matmul(h, f"l{layer}.{p}", n_embd, n_embd), to_heads])],
                perm=[0, 2, 1, 3],
            )
            for p in ("q", "k", "v")
        )
        g.inputs += [
            helper.make_tensor_value_info(
                f"past_key_values.{layer}.{kind}", TensorProto.FLOAT,
                ["batch", n_head, "past", head],
            )
            for kind in ("key", "value")
        ]  # fmt: skip
        keys = g.op(
            "Concat", [f"past_key_values.{layer}.key", k], axis=2, out=f"present.{layer}.key"
        )
        values = g.op(
            "Concat", [f"past_key_values.{layer}.value", v], axis=2, out=f"present.{layer}.value"
        )
        scores = g.op(
            "Mul",
            [
                g.op("MatMul", [q, g.op("Transpose", [keys], perm=[0, 1, 3, 2])]),
                g.const(np.array(1 / np.sqrt(head), dtype=np.float32)),
            ],
        )
        scores = g.op("Where", [allowed, scores, g.const(np.array(-1e9, dtype=np.float32))])
        attended = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), values])
        merged = g.op(
            "Reshape",
            [g.op("Transpose", [attended], perm=[0, 2, 1, 3]), g.const(np.array([0, 0, n_embd]))],
        )
        x = g.op("Add", [x, g.matmul(merged, f"l{layer}.o", n_embd, n_embd)])
        up = g.matmul(g.norm(x, n_embd, f"l{layer}.ffn_norm"), f"l{layer}.up", n_embd, n_ff)
        act = g.op("Mul", [up, g.op("Sigmoid", [up])])  # SiLU
        x = g.op("Add", [x, g.matmul(act, f"l{layer}.down", n_ff, n_embd)])
    g.op("MatMul", [g.norm(x, n_embd, "final_norm"), g.weight("lm_head", (n_embd, vocab))],
         out="logits")  # fmt: skip

    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])]
    for layer in range(n_layer):
        outputs += [
            helper.make_tensor_value_info(
                f"present.{layer}.{kind}", TensorProto.FLOAT, ["batch", n_head, "total", head]
            )
            for kind in ("key", "value")
        ]
    inputs = [
        helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "total"]),
        *g.inputs,
    ]
    graph = helper.make_graph(g.nodes, "tiny_decoder", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime of the last years
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    _write_configs(folder, tokens, types, merges, n_layer, n_embd, n_head, context_length)
    return folder


class _Graph:
    """Collects nodes and initializers with generated names."""

    def __init__(self, rng: np.random.Generator, quant: str) -> None:
        self.rng, self.quant = rng, quant
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: object) -> str:
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def const(self, value: np.ndarray) -> str:
        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], *, quantize: bool = True) -> str:
        values = (self.rng.standard_normal(shape) * 0.05).astype(np.float32)
        if self.quant == "int8" and quantize:
            scale = np.float32(np.abs(values).max() / 127)
            q = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
            self.initializers += [
                numpy_helper.from_array(q, f"{name}.q"),
                numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{name}.scale"),
            ]
            return self.op("DequantizeLinear", [f"{name}.q", f"{name}.scale"], out=name)
        self.initializers.append(numpy_helper.from_array(values, name))
        return name

    def matmul(self, x: str, name: str, n_in: int, n_out: int) -> str:
        return self.op("MatMul", [x, self.weight(name, (n_in, n_out))])

    def norm(self, x: str, size: int, name: str) -> str:
        scale = self.const(np.ones(size, dtype=np.float32))
        bias = self.const(np.zeros(size, dtype=np.float32))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-5)


def _write_configs(
    folder: Path, tokens: list[str], types: list[int], merges: list[str],
    n_layer: int, n_embd: int, n_head: int, context_length: int,
) -> None:  # fmt: skip
    bos, eos = tokens.index(BOS), tokens.index(EOS)
    genai = {
        "model": {
            "type": "tiny_decoder",
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
            "context_length": context_length,
            "vocab_size": len(tokens),
            "decoder": {
                "filename": "model.onnx",
                "head_size": n_embd // n_head,
                "hidden_size": n_embd,
                "num_attention_heads": n_head,
                "num_key_value_heads": n_head,
                "num_hidden_layers": n_layer,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {"max_length": context_length, "past_present_share_buffer": False},
    }
    special = [i for i, kind in enumerate(types) if kind in (3, 4)]  # CONTROL, USER_DEFINED
    added = [
        {"id": i, "content": tokens[i], "special": types[i] == 3, "single_word": False,
         "lstrip": False, "rstrip": False, "normalized": False}
        for i in special
    ]  # fmt: skip
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    tokenizer = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {**byte_level, "use_regex": True},
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
            "byte_fallback": False, "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": merges,
        },
    }  # fmt: skip
    tokenizer_config = {
        "bos_token": BOS,
        "eos_token": EOS,
        "chat_template": DEEPSEEK_R1_TEMPLATE,
        "added_tokens_decoder": {str(a["id"]): a for a in added},
    }
    for name, data in (
        ("genai_config.json", genai),
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", tokenizer_config),
    ):
        (folder / name).write_text(json.dumps(data, ensure_ascii=False, indent=1), "utf-8")
