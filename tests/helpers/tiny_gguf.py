"""Tiny random-weight GGUF models for tests: `write_tiny_llama` and the DeepSeek R1 vocabulary.

Test helper only (imported as `helpers.tiny_gguf`, with `tests/` on pytest's pythonpath); imports
numpy and the `gguf` library, nothing from the appliance, so it cannot hide an appliance bug.

The file is a real `llama` model as llama.cpp loads it: a byte-level BPE (`gpt2`) tokenizer with
the 256 byte tokens in GPT-2's byte-to-unicode order, a few merges (llama.cpp refuses a `gpt2`
vocabulary with no merges: "cannot find tokenizer merges in model file"), the DeepSeek R1
special tokens, and R1's chat template. Weights are random, so the text it writes is noise.
Matrices whose innermost dimension is a multiple of 32 are stored Q8_0 (the block size); the
rest (norms) F32. About 100 KB with the defaults, written in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# Role markers and tool-call framing are CONTROL tokens in R1; <think> and </think> are plain
# added tokens (USER_DEFINED), so detokenizers keep them in the text (see deepseek.md 3.2).
CONTROL_TOKENS = (
    BOS,
    EOS,
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>",
)
USER_DEFINED_TOKENS = ("<think>", "</think>")
# Pairs of existing tokens (in GPT-2's byte alphabet: "Ġ" is a space) and the token each makes.
MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"))

# DeepSeek-R1 distills' chat template (tokenizer_config.json, February 2025 revision), as
# transcribed in shared/reference/deepseek.md section 3.1: data, not code.
DEEPSEEK_R1_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prom"
    "pt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}"
    "{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
    "{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + "
    "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + "
    "'\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + "
    "content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + "
    "message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + "
    "'<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}"
    "{% endif %}"
)


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
) -> Path:
    """Write a random-weight `llama` GGUF with a DeepSeek R1 vocabulary to `path`; return `path`.

    `chat_template=None` leaves `tokenizer.chat_template` out. Pass another `seed` for a file
    with the same shape but different bytes (a different sha256).
    """
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must divide by n_head, and n_head by n_head_kv")
    path = Path(path)
    tokens, token_types, merges = _vocabulary()
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    writer = GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(LlamaFileType.MOSTLY_Q8_0)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("deepseek-v3")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def matrix(tensor: str, rows: int, cols: int) -> None:
        # numpy (rows, cols) is ggml {cols, rows}: cols is the innermost dimension.
        weights = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        if cols % 32 == 0:
            writer.add_tensor(
                tensor,
                quantize(weights, GGMLQuantizationType.Q8_0),
                raw_dtype=GGMLQuantizationType.Q8_0,
            )
        else:
            writer.add_tensor(tensor, weights)

    def norm(tensor: str, size: int) -> None:
        writer.add_tensor(tensor, np.ones(size, dtype=np.float32))

    n_kv = head_dim * n_head_kv
    matrix("token_embd.weight", len(tokens), n_embd)
    for layer in range(n_layer):
        prefix = f"blk.{layer}"
        norm(f"{prefix}.attn_norm.weight", n_embd)
        matrix(f"{prefix}.attn_q.weight", n_embd, n_embd)
        matrix(f"{prefix}.attn_k.weight", n_kv, n_embd)
        matrix(f"{prefix}.attn_v.weight", n_kv, n_embd)
        matrix(f"{prefix}.attn_output.weight", n_embd, n_embd)
        norm(f"{prefix}.ffn_norm.weight", n_embd)
        matrix(f"{prefix}.ffn_gate.weight", n_ff, n_embd)
        matrix(f"{prefix}.ffn_up.weight", n_ff, n_embd)
        matrix(f"{prefix}.ffn_down.weight", n_embd, n_ff)
    norm("output_norm.weight", n_embd)
    matrix("output.weight", len(tokens), n_embd)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Byte tokens, merged tokens, then special tokens; with their types and the merge list."""
    tokens = list(_bytes_to_unicode().values())
    types = [TokenType.NORMAL] * len(tokens)
    for left, right in MERGES:
        tokens.append(left + right)
        types.append(TokenType.NORMAL)
    tokens += CONTROL_TOKENS
    types += [TokenType.CONTROL] * len(CONTROL_TOKENS)
    tokens += USER_DEFINED_TOKENS
    types += [TokenType.USER_DEFINED] * len(USER_DEFINED_TOKENS)
    return tokens, [int(kind) for kind in types], [f"{left} {right}" for left, right in MERGES]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (as in its `encoder.py`)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return dict(sorted(mapping.items()))
