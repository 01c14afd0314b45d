"""read_gguf_metadata: what it reads from good files, and the clear errors bad ones get."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.errors import ModelFormatError, NotFound, UsageError
from appliance.store.gguf_meta import _quantization, read_gguf_metadata
from helpers.tiny_gguf import BOS, DEEPSEEK_R1_TEMPLATE, EOS, write_tiny_llama, write_tiny_model


def header(tensor_count: int = 0, kv_count: int = 0, version: int = 3) -> bytes:
    return struct.pack("<4sIQQ", b"GGUF", version, tensor_count, kv_count)


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    return path


def test_reads_architecture_quantization_context_template_and_special_tokens(tmp_path):
    meta = read_gguf_metadata(write_tiny_llama(tmp_path / "tiny.gguf"))
    assert meta.architecture == "llama"
    assert meta.quantization == "Q8_0"
    assert meta.context_length == 512
    assert meta.chat_template == DEEPSEEK_R1_TEMPLATE
    assert (meta.bos_token, meta.eos_token) == (BOS, EOS)
    assert meta.name.startswith("Tiny DeepSeek-R1")
    assert meta.split_count == 1


def test_parameter_count_is_the_sum_of_tensor_elements_when_undeclared(tmp_path):
    meta = read_gguf_metadata(write_tiny_llama(tmp_path / "tiny.gguf", n_layer=1))
    vocab, embd, ff, kv = 278, 64, 128, 32
    per_layer = 2 * embd + 2 * embd * embd + 2 * kv * embd + 3 * ff * embd
    assert meta.parameter_count == 2 * vocab * embd + embd + per_layer


def test_a_file_without_a_chat_template_reads_as_none(tmp_path):
    meta = read_gguf_metadata(write_tiny_llama(tmp_path / "tiny.gguf", chat_template=None))
    assert meta.chat_template is None


def test_without_a_file_type_the_commonest_matrix_type_names_the_quantization():
    def tensor(kind: str, dims: int) -> SimpleNamespace:
        return SimpleNamespace(tensor_type=SimpleNamespace(name=kind), shape=[32] * dims)

    tensors = [tensor("F32", 1)] * 5 + [tensor("Q4_K", 2)] * 3 + [tensor("Q6_K", 2)]
    assert _quantization(None, tensors) == "Q4_K"
    assert _quantization(15, tensors) == "Q4_K_M"  # general.file_type wins when present
    assert _quantization(0, tensors) == "F32"
    assert _quantization(9999, tensors) == "Q4_K"  # unknown file type: fall back


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04" + bytes(60), r"not a GGUF file \(starts with b'PK\\x03\\x04'.*zip"),
        (b"<!DOCTYPE html><html>", r"not a GGUF file \(starts with b'<!DO'.*HTML"),
        (b"lmgg" + bytes(60), r"old GGML file"),
        (b"GG", r"truncated GGUF file \(2 bytes"),
        (b"GGUF\x03\x00\x00\x00\x01", r"truncated GGUF file \(9 bytes"),
        (b"", r"is empty"),
        (header(version=1), r"GGUF version 1 is not supported"),
        (struct.pack(">4sIQQ", b"GGUF", 3, 0, 0), r"big-endian"),
        (header(tensor_count=2**40), r"tensor count 1,099,511,627,776 is absurd"),
        (header(kv_count=10**7), r"metadata key count 10,000,000 is absurd"),
        # A key claiming a 2**62-byte name: the reader must stop at the end of the file.
        (header(kv_count=1) + struct.pack("<Q", 2**62) + b"abc", r"truncated GGUF file"),
        # A value of type 99, which GGUF does not define.
        (header(kv_count=1) + gguf_string("x") + struct.pack("<I", 99) + bytes(8), r"damaged"),
    ],
    ids=[
        "zip", "html", "ggml", "two-bytes", "short-header", "empty", "version-1", "big-endian",
        "absurd-tensors", "absurd-keys", "absurd-string", "unknown-type",
    ],
)  # fmt: skip
def test_bad_files_get_a_clear_error_naming_the_file(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ModelFormatError, match=message) as caught:
        read_gguf_metadata(path)
    assert caught.value.message.startswith(str(path))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_a_file_cut_short_anywhere_is_reported_truncated(tmp_path, keep):
    whole = write_tiny_llama(tmp_path / "whole.gguf").read_bytes()
    path = write(tmp_path, whole[: int(len(whole) * keep)])
    with pytest.raises(ModelFormatError, match="truncated GGUF file"):
        read_gguf_metadata(path)


def test_a_header_only_file_naming_no_architecture_is_refused(tmp_path):
    with pytest.raises(ModelFormatError, match="names no architecture"):
        read_gguf_metadata(write(tmp_path, header()))


def test_an_architecture_llama_cpp_cannot_run_is_refused_by_name(tmp_path):
    arch = gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("mamba9")
    with pytest.raises(ModelFormatError, match=r"unknown architecture 'mamba9'.*runs .*deepseek2"):
        read_gguf_metadata(write(tmp_path, header(kv_count=1) + arch))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "deepseek2"])
def test_layer_and_kv_shape_is_read_for_the_planner(tmp_path, arch):
    meta = read_gguf_metadata(write_tiny_model(tmp_path / f"{arch}.gguf", arch))
    shape = meta.shape
    assert shape is not None
    assert (shape.block_count, shape.embedding_length, shape.head_count) == (2, 64, 4)
    assert (
        sum(shape.layer_bytes) + shape.input_bytes + shape.output_bytes
        < tmp_path.joinpath(f"{arch}.gguf").stat().st_size
    )
    if arch == "deepseek2":  # MLA: one latent KV head of kv_lora_rank + rope dim
        assert (shape.head_count_kv, shape.key_length, shape.value_length) == (1, 48, 32)
        assert shape.key_length_mla == 32
    else:
        assert (shape.head_count_kv, shape.key_length, shape.key_length_mla) == (2, 16, 0)


def test_quantization_mix_and_special_tokens_are_recorded(tmp_path):
    meta = read_gguf_metadata(write_tiny_model(tmp_path / "q4.gguf", "qwen2", quant="Q4_0"))
    assert meta.quantization == "Q4_0"
    assert set(meta.tensor_types) == {"Q4_0", "F32"}
    assert {"<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", BOS, EOS} <= set(
        meta.special_tokens
    )


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        read_gguf_metadata(tmp_path / "missing.gguf")


def test_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        read_gguf_metadata(tmp_path)
