"""`POST /v1/embeddings`: OpenAI's embeddings API over the engine's `embed` call.

Request/response models live here (a small surface). Vectors come back L2-normalised, as
OpenAI's do; `encoding_format: base64` (what the official Python client asks for by default)
packs them as little-endian float32.
"""

from __future__ import annotations

import base64
import struct
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from appliance.api.deps import ServicesDep
from appliance.api.openai.serving import account_embedding, admit_key, engine_for, resolve_model
from appliance.errors import UsageError

router = APIRouter()


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: object) -> object:
        # OpenAI also takes token-id arrays; this server embeds text only, and says so.
        if isinstance(value, list) and any(isinstance(v, int | list) for v in value):
            raise ValueError("token-id arrays are not supported; send text")
        return value

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("give at least one text")
        if any(not text for text in texts):
            raise ValueError("texts must not be empty")
        return value

    @field_validator("dimensions")
    @classmethod
    def _no_truncation(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("this server returns the model's full vectors; leave it out")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


def encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


@router.post("/embeddings", operation_id="create_embeddings")
async def create_embeddings(body: EmbeddingRequest, services: ServicesDep) -> EmbeddingResponse:
    texts = body.texts()
    limit = services.config.limits.max_embedding_inputs
    if len(texts) > limit:
        raise UsageError(
            f"input: {len(texts):,} texts is more than the limit of {limit:,} "
            "(limits.max_embedding_inputs); send them in several requests"
        )
    info = resolve_model(services, body.model)
    admit_key(services, info)
    result = await engine_for(services, info).embed(info, texts, normalize=True)
    account_embedding(services, info, result.prompt_tokens)
    return EmbeddingResponse(
        data=[
            EmbeddingItem(index=i, embedding=encode_vector(vector, body.encoding_format))
            for i, vector in enumerate(result.vectors)
        ],
        model=info.name,
        usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )
