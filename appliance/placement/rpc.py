"""The RPC pool: can a model be spread over this box and its llama.cpp RPC peers, and how.

With `rpc.peers` set, llama.cpp offloads layers to the peers' `rpc-server`s as if they were
local GPUs, split by the memory each offers. This counts that memory the way `fit.py` counts a
local device's: weights on devices (the token embedding stays in this box's RAM), the KV cache
with its layers, and one compute buffer and a margin per device. Pure arithmetic; may import
config, records and `fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import Config, parse_rpc_peer
from appliance.placement.fit import (
    DEVICE_MARGIN_BYTES,
    DEVICE_MARGIN_SHARE,
    MIB,
    PlanOptions,
    estimate,
)
from appliance.records import ModelShape


@dataclass(frozen=True)
class RpcPeer:
    host: str
    port: int
    memory_mib: int

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def rpc_peers(config: Config) -> list[RpcPeer]:
    return [RpcPeer(*parse_rpc_peer(peer)) for peer in config.rpc.peers]


@dataclass(frozen=True)
class PoolFit:
    layers: int
    """Layers the pool's devices hold (all of them when `full`); the rest stay in RAM."""
    full: bool
    lines: list[str]


def _gib(size: float) -> str:
    return f"{size / 1024**3:,.2f} GiB"


def plan_pool(
    shape: ModelShape,
    peers: list[RpcPeer],
    local: tuple[str, int] | None,
    context: int,
    opts: PlanOptions,
) -> PoolFit:
    """How many layers fit on the peers plus `local` (a local accelerator: id and MiB)."""
    est = estimate(shape, context, opts.parallel, opts)
    devices = [(f"RPC peer {p.endpoint}", p.memory_mib * MIB) for p in peers]
    if local is not None:
        devices.append((local[0], local[1] * MIB))
    usable = 0
    parts = []
    for name, total in devices:
        # Each device keeps its own compute buffer and the runtime's margin.
        room = total - int(DEVICE_MARGIN_BYTES + DEVICE_MARGIN_SHARE * total) - est.compute
        usable += max(room, 0)
        parts.append(f"{name} {_gib(total)} ({_gib(max(room, 0))} usable)")
    on_devices = est.weights - shape.input_bytes + est.kv
    lines = [
        f"RPC pool: {' + '.join(parts)} = {_gib(usable)} usable after a margin and a "
        f"{_gib(est.compute)} compute buffer each",
    ]
    if on_devices <= usable:
        lines.append(
            f"needed on the pool {_gib(on_devices)} (all {shape.block_count} layers, the output "
            f"and the KV cache; the token embedding stays in RAM) <= {_gib(usable)}: fits, "
            "spread by each device's memory"
        )
        return PoolFit(shape.block_count, True, lines)
    per_layer_kv = est.kv / max(shape.block_count, 1)
    room = usable - shape.output_bytes
    layers, used = 0, 0.0
    for size in shape.layer_bytes:
        if used + size + per_layer_kv > room:
            break
        used += size + per_layer_kv
        layers += 1
    lines.append(
        f"needed on the pool {_gib(on_devices)} > {_gib(usable)}: {layers} of "
        f"{shape.block_count} layers fit on it, the rest would stay in this box's RAM"
    )
    return PoolFit(layers, False, lines)
