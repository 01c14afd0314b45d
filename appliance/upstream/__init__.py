"""The upstream engine: model names the appliance forwards to OpenAI-compatible servers.

When one box is not enough (a model larger than its memory, more users than its slots), the
heavy lifting goes to an existing distributed engine (vLLM or vLLM-Ascend over Ray, MindIE,
llama-server, another appliance) and this box stays the LAN front door: API keys, quotas,
audit, metrics and the console are ours. `registry` keeps the configured upstreams,
`wire` translates between our engine messages and the OpenAI wire format, `pool` sends
requests (least outstanding requests first, failover before the first byte, health checks).

May import records, config, errors, engine.messages and httpx; never the API, the CLI, the
store, the engine manager or a worker (the API routes requests here through
`api/openai/serving.py`).
"""

from appliance.upstream.pool import UpstreamPool
from appliance.upstream.registry import UpstreamRegistry, UpstreamSpec

__all__ = ["UpstreamPool", "UpstreamRegistry", "UpstreamSpec"]
