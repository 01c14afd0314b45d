"""The IPC vocabulary between the daemon and an engine worker (msgspec structs; a leaf module).

Frames on the wire are a 4-byte big-endian length followed by a msgpack-encoded tagged struct.
Daemon → worker: Load, Submit, Cancel, Ping. Worker → daemon: Ready, LoadFailed, Delta, Done,
Failed, Pong. No HTTP types cross this boundary; the API converts at its edge.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import msgspec


class Load(msgspec.Struct, tag="load"):
    model_path: str
    context_length: int
    """0 means the model's trained context length."""
    threads: int
    gpu_layers: int = 0


class Submit(msgspec.Struct, tag="submit"):
    id: str
    prompt: str
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None


class Cancel(msgspec.Struct, tag="cancel"):
    id: str


class Ping(msgspec.Struct, tag="ping"):
    nonce: int


class Ready(msgspec.Struct, tag="ready"):
    context_length: int
    load_seconds: float
    system_info: str = ""


class LoadFailed(msgspec.Struct, tag="load_failed"):
    error: str


class Delta(msgspec.Struct, tag="delta"):
    id: str
    text: str
    tokens: int = 1


class Done(msgspec.Struct, tag="done"):
    id: str
    finish_reason: str
    """`stop` (end of sequence or a stop string), `length` (max_tokens) or `cancelled`."""
    prompt_tokens: int
    completion_tokens: int


class Failed(msgspec.Struct, tag="failed"):
    id: str
    error: str
    """Why the request could not be served, in words for the person who sent it."""
    code: str = "engine_error"


class Pong(msgspec.Struct, tag="pong"):
    nonce: int


ToWorker = Load | Submit | Cancel | Ping
FromWorker = Ready | LoadFailed | Delta | Done | Failed | Pong

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)


def encode_frame(message: ToWorker | FromWorker) -> bytes:
    payload = _encoder.encode(message)
    return _HEADER.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"IPC frame of {length} bytes exceeds the {MAX_FRAME_BYTES} limit")
    return length


HEADER_SIZE = _HEADER.size


def read_frame_sync(stream: BinaryIO) -> bytes | None:
    """Read one frame's payload from a blocking stream; None at end of stream."""
    header = stream.read(HEADER_SIZE)
    if len(header) < HEADER_SIZE:
        return None
    length = frame_length(header)
    payload = stream.read(length)
    return payload if len(payload) == length else None
