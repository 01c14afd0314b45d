"""The IPC vocabulary between the daemon and an engine worker (msgspec structs; a leaf module).

Frames on the wire are a 4-byte big-endian length followed by a msgpack-encoded tagged struct.
Daemon → worker: Load, Submit, Embed, Cancel, Ping, StatsRequest. Worker → daemon:
LoadProgress, Ready, LoadFailed, Delta, Done, Failed, Embeddings, Pong, Stats.
No HTTP types cross this boundary; the API converts at its edge.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

import msgspec


class Load(msgspec.Struct, tag="load"):
    model_path: str
    context_length: int
    """Context per sequence slot; 0 means the model's trained context length."""
    threads: int
    gpu_layers: int = 0
    slots: int = 1
    """Sequences decoded together in one batch (continuous batching), as the placement sized
    them from the fit planner (at least 1)."""
    batch_tokens: int = 512
    """Most tokens in one decode step: caps prompt chunks so long prompts do not stall others."""
    runtime_dir: str = ""
    """The llama.cpp build's library folder (appliance.runtime); the worker loads nothing else."""
    backend_libs: list[str] = msgspec.field(default_factory=list)
    """ggml backends to register, in order: the self-tested CPU variant, then the accelerator's."""
    oom_score_adj: int | None = None
    """Raise the worker's `oom_score_adj` to this before loading, so it is killed first."""
    engine: str = "llama.cpp"
    """Which runtime serves the model, as the placement chose: `llama.cpp` or `onnxruntime`."""
    provider: str = ""
    """onnxruntime's execution provider (`CUDAExecutionProvider`, `CANNExecutionProvider`,
    `CPUExecutionProvider`); unused by llama.cpp."""
    provider_options: dict[str, str] = msgspec.field(default_factory=dict)
    """That provider's options (device id and the like), as the placement set them."""
    rpc_servers: list[str] = msgspec.field(default_factory=list)
    """llama.cpp RPC peers (`host:port`) the model's layers are spread over with the local
    devices (config `rpc.peers`); needs a runtime built with GGML_RPC."""
    kv_cache_type: str = "f16"
    """Element type of the KV cache: f16, or q8_0 for about half the memory per slot."""
    draft_tokens: int = 8
    """Most tokens drafted by prompt lookup per sequence and step (speculative decoding); 0
    turns drafting off."""
    draft_model_path: str = ""
    """A second, smaller GGUF model with the same vocabulary that drafts tokens when prompt
    lookup has no guess (`engine.draft_model`); empty: none."""
    draft_gpu_layers: int = 0
    """Layers of the draft model offloaded to the device (-1 all, 0 none)."""
    draft_required: bool = False
    """The administrator named the draft model: failing to load it fails the load. Otherwise
    (chosen automatically) the model is served without it."""
    stream_interval_ms: int = 0
    """Longest a streamed token after an answer's first may wait to go out merged with the
    next ones (`engine.stream_interval_ms`); 0 sends every token at once."""


class Submit(msgspec.Struct, tag="submit"):
    id: str
    prompt: str
    """Rendered prompt text (the API applied the chat template); the worker tokenizes it."""
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None
    logit_bias: dict[int, float] = msgspec.field(default_factory=dict)
    n: int = 1
    """Independent completions of the same prompt (choices 0..n-1, sharing the prompt's KV)."""
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: str | None = None
    """GBNF grammar constraining the output (from response_format or tool_choice)."""
    json_schema: str | None = None
    """A JSON schema (text) to be turned into a grammar by the worker, when grammar is unset."""
    reasoning_budget: int | None = None
    """Most tokens inside a `<think>` block; then the worker closes it and the answer begins."""
    prompt_opens_thinking: bool = False
    """The rendered prompt ends inside an open `<think>` block (DeepSeek-R1's template)."""
    upstream_body: dict[str, Any] | None = None
    """For an upstream model (appliance.upstream) only: the chat request's fields as the client
    set them, forwarded instead of `prompt`. Never sent to a worker."""


class Embed(msgspec.Struct, tag="embed"):
    id: str
    inputs: list[str]
    normalize: bool = True


class Cancel(msgspec.Struct, tag="cancel"):
    id: str


class Ping(msgspec.Struct, tag="ping"):
    nonce: int


class StatsRequest(msgspec.Struct, tag="stats_request"):
    nonce: int


class LoadProgress(msgspec.Struct, tag="load_progress"):
    fraction: float


class Ready(msgspec.Struct, tag="ready"):
    context_length: int
    """Tokens each slot's conversation may hold."""
    load_seconds: float
    system_info: str = ""
    slots: int = 1
    draft_model_loaded: bool = False
    """The draft model of `Load.draft_model_path` is loaded and drafting."""


class LoadFailed(msgspec.Struct, tag="load_failed"):
    error: str


class TopLogprob(msgspec.Struct):
    token: str
    logprob: float


class TokenLogprob(msgspec.Struct):
    token: str
    logprob: float
    top: list[TopLogprob] = msgspec.field(default_factory=list)


class Delta(msgspec.Struct, tag="delta"):
    id: str
    text: str
    tokens: int = 1
    index: int = 0
    """Which of the request's n choices this belongs to."""
    logprobs: list[TokenLogprob] | None = None


class Done(msgspec.Struct, tag="done"):
    id: str
    finish_reason: str
    """`stop` (end of sequence or a stop string), `length` (max_tokens) or `cancelled`."""
    prompt_tokens: int
    completion_tokens: int
    index: int = 0
    cached_tokens: int = 0
    """Prompt tokens whose KV was reused from the prefix cache."""
    last: bool = True
    """False while other choices of the same request are still generating."""


class Failed(msgspec.Struct, tag="failed"):
    id: str
    error: str
    """Why the request could not be served, in words for the person who sent it."""
    code: str = "engine_error"


class Embeddings(msgspec.Struct, tag="embeddings"):
    id: str
    vectors: list[list[float]]
    prompt_tokens: int


class Pong(msgspec.Struct, tag="pong"):
    nonce: int


class Stats(msgspec.Struct, tag="stats"):
    nonce: int
    slots_total: int
    slots_busy: int
    waiting: int
    prefix_cache_hits: int
    prefix_cache_tokens: int
    """Prompt tokens served from cached KV since the worker started."""
    prompt_tokens: int
    generated_tokens: int
    decode_steps: int
    draft_tokens: int = 0
    """Tokens guessed ahead (speculative decoding) and decoded for verification."""
    draft_accepted: int = 0
    """Of those, the ones the model's own sampling agreed with (each one a step saved)."""
    lookup_draft_tokens: int = 0
    """Of `draft_tokens`, those guessed by prompt lookup."""
    lookup_draft_accepted: int = 0
    model_draft_tokens: int = 0
    """Of `draft_tokens`, those guessed by the draft model."""
    model_draft_accepted: int = 0


ToWorker = Load | Submit | Embed | Cancel | Ping | StatsRequest
FromWorker = LoadProgress | Ready | LoadFailed | Delta | Done | Failed | Embeddings | Pong | Stats

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Both sides refuse to write a larger frame and skip a larger one they are sent."""
_SKIP_CHUNK = 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)


class FrameTooLarge(ValueError):
    """A frame over MAX_FRAME_BYTES: refused when writing, skipped (in bounded reads) when read."""

    def __init__(self, length: int) -> None:
        super().__init__(f"IPC frame of {length:,} bytes exceeds the {MAX_FRAME_BYTES:,} limit")
        self.length = length


def encode_frame(message: ToWorker | FromWorker) -> bytes:
    """Header and payload; raises FrameTooLarge (nothing is written) when over the limit."""
    payload = _encoder.encode(message)
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameTooLarge(len(payload))
    return _HEADER.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameTooLarge(length)
    return length


HEADER_SIZE = _HEADER.size


def read_frame_sync(stream: BinaryIO) -> bytes | None:
    """Read one frame's payload from a blocking stream; None at end of stream.

    A frame over the limit is read past in 1 MiB pieces (so the next frame is found and memory
    stays bounded), then reported as FrameTooLarge.
    """
    header = stream.read(HEADER_SIZE)
    if len(header) < HEADER_SIZE:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        left = length
        while left > 0:
            skipped = stream.read(min(left, _SKIP_CHUNK))
            if not skipped:
                return None
            left -= len(skipped)
        raise FrameTooLarge(length)
    payload = stream.read(length)
    return payload if len(payload) == length else None
