"""The two errors every engine runtime raises (llama.cpp's and onnxruntime's alike).

A leaf of the worker: imports nothing, so the batcher can name them without loading a runtime.
"""

from __future__ import annotations


class LoadError(Exception):
    """The model could not be loaded (its message is shown to the administrator)."""


class RequestRejected(ValueError):
    """This request cannot be served as written (its message is shown to its sender)."""
