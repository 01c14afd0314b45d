"""A tiny random-weight model made by onnxruntime-genai's own builder: `builder_onnx_model()`.

Test helper only; imports torch and transformers (the builder needs both), `helpers.tiny_onnx`
and `helpers.deepseek_vocab`, nothing from the appliance. Nothing is downloaded: a tiny Llama
(2 layers, 64 wide, 4 query heads over 2 KV heads, DeepSeek R1's vocabulary and template) gets
random weights from a fixed seed and is saved as a Hugging Face folder, then
`python -m onnxruntime_genai.models.builder -p int4 -e cpu` turns it into the genai layout:
`MatMulNBits` int4 weights and `GroupQueryAttention`. Built once per checkout and kept under
.pytest_cache (like the runtime verdict), rebuilt when this file's version changes.

Two fixes to the builder's output, both for today's transformers (5.x) that the builder was not
written against: it writes `null` for unset search options (onnxruntime-genai then refuses its
own config) and names the tokenizer class `TokenizersBackend`; the chat template also lands in
`chat_template.jinja` rather than `tokenizer_config.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.deepseek_vocab import BOS, DEEPSEEK_R1_TEMPLATE, EOS, vocabulary
from helpers.tiny_onnx import write_tiny_onnx

CACHE = Path(__file__).resolve().parents[2] / ".pytest_cache" / "builder-onnx"
VERSION = "1"


SIZES = {
    # name: hidden, intermediate, layers, query heads, KV heads
    "tiny": (64, 128, 2, 4, 2),
    # For benchmarks/bench_onnx.py: big enough that a step is real work (~50M parameters).
    "bench": (768, 2048, 8, 12, 4),
}


def builder_onnx_model(size: str = "tiny") -> Path:
    """The builder-made model folder (built on first use in this checkout)."""
    work = CACHE / f"v{VERSION}" if size == "tiny" else CACHE / f"v{VERSION}-{size}"
    out = work / "model"
    if (out / "genai_config.json").is_file() and (out / ".complete").is_file():
        return out
    shutil.rmtree(work, ignore_errors=True)
    hf = work / "hf"
    _write_hf_model(hf, work / "tiny", SIZES[size])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
         "-p", "int4", "-e", "cpu", "-c", str(work / "cache")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(
            f"the builder failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    _fix_configs(out)
    (out / ".complete").write_text("")
    return out


def _write_hf_model(hf: Path, scratch: Path, size: tuple[int, int, int, int, int]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hf.mkdir(parents=True, exist_ok=True)
    write_tiny_onnx(scratch)  # only for its tokenizer files: the same vocabulary and template
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(scratch / name, hf / name)
    tokens, _types, _merges = vocabulary()
    hidden, intermediate, layers, heads, kv_heads = size
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=256 if hidden == 64 else 1024,
        bos_token_id=tokens.index(BOS), eos_token_id=tokens.index(EOS),
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so greedy output varies
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.2)
    model.save_pretrained(hf)


def _fix_configs(out: Path) -> None:
    genai_path = out / "genai_config.json"
    genai = json.loads(genai_path.read_text())
    genai["search"] = {k: v for k, v in genai["search"].items() if v is not None}
    genai_path.write_text(json.dumps(genai, indent=1))
    tokenizer_path = out / "tokenizer_config.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    tokenizer["tokenizer_class"] = "PreTrainedTokenizerFast"
    tokenizer.setdefault("chat_template", DEEPSEEK_R1_TEMPLATE)
    tokenizer.setdefault("bos_token", BOS)
    tokenizer.setdefault("eos_token", EOS)
    tokenizer_path.write_text(json.dumps(tokenizer, ensure_ascii=False, indent=1))
