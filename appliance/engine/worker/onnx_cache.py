"""The ONNX engine's KV cache: how one batch of runs is fed to the session and where the
past/present tensors live between steps.

Two strategies, chosen from the graph (`onnx_layout.DecoderLayout.group_query_attention`):
`SharedKV` (one device buffer per layer for all slots, bound in place with IO binding; every
generating sequence in one run) and `PerSequenceKV` (host arrays per sequence, one run each).
May import numpy, onnx (to build the device-side copy graph) and, for types only, `onnxrt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from appliance.engine.worker.onnxrt import OnnxRuntime


@dataclass
class Run:
    """One sequence's part of a batch: its tokens, fed from KV position `start`."""

    seq: int
    start: int
    tokens: list[int]
    output: int | None
    """Batch index whose logits the batcher will sample (None: a chunk in the middle)."""


class SharedKV:
    """One KV buffer per past/present pair, [slots, kv_heads, context + 1, head], bound in
    place: GroupQueryAttention writes each row's new entries at that row's own length. The
    extra position is scratch for a dummy row whose sequence is already full."""

    def __init__(self, ort: Any, rt: OnnxRuntime, options: Any) -> None:
        self.ort, self.rt = ort, rt
        layout = rt.layout
        self.shape = [rt.slots, layout.kv_heads, rt.context_length + 1, layout.head_size]
        self.row_bytes = int(np.prod(self.shape[1:])) * rt.dtype.itemsize
        self.device = rt.device_type
        new = ort.OrtValue.ortvalue_from_shape_and_type  # type: ignore[attr-defined]
        try:
            self.buffers = [new(self.shape, rt.dtype, self.device, 0) for _ in rt.kv_names]
        except Exception:  # a provider without Python allocation: keep the cache in host RAM
            self.device = "cpu"
            self.buffers = [new(self.shape, rt.dtype, "cpu", 0) for _ in rt.kv_names]
        self.binding = rt.session.io_binding()
        self.bound_rows: tuple[int, int] | None = None
        self.logits_index = len(rt.kv_names)  # outputs come back in binding order
        self._copier = _copy_session(ort, rt, options)

    def run(self, runs: list[Run]) -> np.ndarray:
        rt = self.rt
        seqs = sorted(r.seq for r in runs)
        # Rows must be contiguous in the buffer: run over lo..hi, idle slots as dummies.
        rows = list(range(seqs[0], seqs[-1] + 1))
        binding = self.binding
        if self.bound_rows != (rows[0], len(rows)):
            # The cache views change only when the rows do: rebinding them every step costs
            # a few percent of a small model's step (binding a name again replaces it).
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            shape = [len(rows), *self.shape[1:]]
            for buffer, (past, present) in zip(self.buffers, rt.kv_names, strict=True):
                pointer = buffer.data_ptr() + rows[0] * self.row_bytes
                binding.bind_input(past, self.device, 0, rt.dtype, shape, pointer)
                binding.bind_output(present, self.device, 0, rt.dtype, shape, pointer)
            self.bound_rows = (rows[0], len(rows))
        for name, value in rt.feeds(runs, rows).items():
            binding.bind_cpu_input(name, value)
        # Bound afresh each run: after a run the name holds that run's logits, whose shape
        # (rows x fed tokens) the next run may not share.
        binding.bind_output(rt.layout.logits, "cpu")
        rt.session.run_with_iobinding(binding)
        logits = binding.get_outputs()[self.logits_index].numpy()
        by_seq = {r.seq: r for r in runs}
        # Each run's last fed position: a prompt chunk's last token, a step's only token.
        picked = [
            logits[seq - rows[0], len(by_seq[seq].tokens) - 1] for seq in (r.seq for r in runs)
        ]
        return np.stack(picked)

    def copy(self, source: int, target: int, length: int) -> None:
        """Copy a sequence's cache rows on the device (an Identity graph bound to both)."""
        rt = self.rt
        binding = self._copier.io_binding()
        shape = [1, *self.shape[1:]]
        for i, buffer in enumerate(self.buffers):
            base = buffer.data_ptr()
            binding.bind_input(
                f"in{i}", self.device, 0, rt.dtype, shape, base + source * self.row_bytes
            )
            binding.bind_output(
                f"out{i}", self.device, 0, rt.dtype, shape, base + target * self.row_bytes
            )
        self._copier.run_with_iobinding(binding)


def _copy_session(ort: Any, rt: OnnxRuntime, options: Any) -> Any:
    from onnx import TensorProto, helper

    element = TensorProto.FLOAT if rt.dtype == np.float32 else TensorProto.FLOAT16
    dims = ["b", "h", "t", "d"]
    count = len(rt.kv_names)
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in{i}"], [f"out{i}"]) for i in range(count)],
        "kv_copy",
        [helper.make_tensor_value_info(f"in{i}", element, dims) for i in range(count)],
        [helper.make_tensor_value_info(f"out{i}", element, dims) for i in range(count)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    providers = rt.session.get_providers()
    return ort.InferenceSession(model.SerializeToString(), providers=providers)  # type: ignore[attr-defined]


class PerSequenceKV:
    """Each sequence's cache as host arrays, fed as past and replaced by present each run."""

    def __init__(self, rt: OnnxRuntime) -> None:
        self.rt = rt
        layout = rt.layout
        empty = np.zeros((1, layout.kv_heads, 0, layout.head_size), dtype=rt.dtype)
        self.cache: list[list[np.ndarray]] = [[empty] * len(rt.kv_names) for _ in range(rt.slots)]
        self.outputs = [layout.logits, *(present for _, present in rt.kv_names)]

    def run(self, runs: list[Run]) -> np.ndarray:
        rt = self.rt
        picked = []
        for run in runs:
            length = rt.lengths[run.seq]
            feeds = rt.feeds([run], [run.seq])
            for (past, _), value in zip(rt.kv_names, self.cache[run.seq], strict=True):
                feeds[past] = value[:, :, :length]
            logits, *present = rt.session.run(self.outputs, feeds)
            self.cache[run.seq] = present
            picked.append(logits[0, -1])
        return np.stack(picked)

    def copy(self, source: int, target: int, length: int) -> None:
        self.cache[target] = [value[:, :, :length].copy() for value in self.cache[source]]
