"""The DeepSeek catalog: loading `catalog.toml` (data, with a source for every figure).

Imports only `appliance.records`, `appliance.errors` and pydantic. The planner turns an entry's
figures into a `ModelShape`; `download.py` looks URLs up here for the expected size and digest.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.errors import ConfigError, NotFound
from appliance.records import ModelShape

# Bits per weight of ggml's block formats (block bytes x 8 / block elements), used only to split
# a catalog file's size into embedding, output and layers when the file itself is not at hand.
BITS_PER_WEIGHT = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K_M": 5.5,
    "Q5_0": 5.5, "Q4_1": 5.0, "Q4_K_M": 4.5, "Q4_0": 4.5, "Q3_K_M": 3.4375, "Q2_K": 2.625,
}  # fmt: skip
CANN_QUANTS = ("F16", "Q8_0", "Q4_0")
"""What llama.cpp's CANN backend runs on Ascend (ggml-org/llama.cpp docs/backend/CANN.md)."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CatalogFile(_Data):
    quantization: str = Field(alias="q")
    file: str
    size_bytes: int = Field(alias="bytes")
    size_exact: bool = Field(alias="exact")
    """True when a byte count was published; False for a decimal-GB figure or a derivation."""
    parts: int = 1
    size_from: str = Field(alias="from")
    url: str
    sha256: str | None = None
    """Published digest, when one is recorded (none are yet: the reference lists none)."""


class CatalogEntry(_Data):
    id: str
    name: str
    architecture: str
    template: str
    """Chat-template family: `deepseek-r1` (distills, R1), `deepseek-v2`, `deepseek-v3`."""
    parameters: int
    active_parameters: int | None = None
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    vocab_size: int
    context_length: int
    mla: bool = False
    """True for GGUFs in llama.cpp's MLA layout (converted after PR #12801)."""
    figures_from: str = Field(alias="from")
    files: list[CatalogFile]

    def file_for(self, quantization: str) -> CatalogFile:
        for item in self.files:
            if item.quantization.lower() == quantization.lower():
                return item
        known = ", ".join(f.quantization for f in self.files)
        raise NotFound(f"{self.id} has no {quantization} build in the catalog; it has {known}")

    def shape(self, file: CatalogFile) -> ModelShape:
        """Estimated shape of `file`: embedding and output at the file's bits per weight, the rest
        spread evenly over the layers (MoE layers are in fact larger than the dense first ones)."""
        bits = BITS_PER_WEIGHT.get(file.quantization.removeprefix("UD-"), 4.5)
        table = int(self.vocab_size * self.embedding_length * bits / 8)
        per_layer = max(0, file.size_bytes - 2 * table) // self.block_count
        if self.mla:  # one latent row per token and layer (deepseek.md 1.3)
            kv = dict(
                head_count_kv=1,
                key_length=self.kv_lora_rank + self.qk_rope_head_dim,
                value_length=self.kv_lora_rank,
                key_length_mla=self.key_length,
            )
        else:
            kv = dict(
                head_count_kv=self.head_count_kv,
                key_length=self.key_length,
                value_length=self.value_length,
            )
        return ModelShape(
            block_count=self.block_count,
            embedding_length=self.embedding_length,
            head_count=self.head_count,
            vocab_size=self.vocab_size,
            layer_bytes=[per_layer] * self.block_count,
            input_bytes=table,
            output_bytes=table,
            **kv,
        )


class Catalog(_Data):
    schema_version: int = Field(alias="schema")
    sources: dict[str, str]
    models: list[CatalogEntry] = Field(alias="model")

    def get(self, entry_id: str) -> CatalogEntry:
        for entry in self.models:
            if entry.id == entry_id:
                return entry
        raise NotFound(
            f"no catalog entry {entry_id!r}; known: {', '.join(e.id for e in self.models)}"
        )


@dataclass(frozen=True)
class CatalogMatch:
    entry: CatalogEntry
    file: CatalogFile


@functools.cache
def load_catalog() -> Catalog:
    text = resources.files("appliance.store").joinpath("catalog.toml").read_text("utf-8")
    return parse_catalog(tomllib.loads(text))


def parse_catalog(data: dict[str, Any]) -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"catalog.toml: {where}: {first['msg']}") from None


def find_by_url(url: str) -> CatalogMatch | None:
    for entry in load_catalog().models:
        for item in entry.files:
            if item.url == url:
                return CatalogMatch(entry, item)
    return None
