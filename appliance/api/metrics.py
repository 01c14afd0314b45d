"""Prometheus metrics (`appliance_*`, units in the names) and the `/metrics` route.

Counters and histograms are updated as requests are served (`accounting.py` and the engine
path in `openai/serving.py`); gauges of slots, queues, models and devices are read from the
engine manager, the scheduler and the device manager's telemetry cache when scraped, so a
scrape never touches hardware. `/metrics` is on the LAN API behind an API key, or, with
`metrics.listen`, alone on its own address without one (`create_metrics_app`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from appliance.api.deps import ApiKeyDep
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from appliance.api.accounting import RequestUsage
    from appliance.services import Services

# Seconds: from a few ms (a warm prefix on a GPU) to a minute (a long prompt on CPUs).
_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_ITL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The daemon's metrics, in a registry of their own (tests build several daemons)."""

    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry()
        self.stats: dict[str, Any] = {}
        """Last worker stats per model, refreshed before each scrape."""
        r = self.registry
        self.requests = Counter("appliance_requests", "LAN API requests by route and status",
                                ["route", "status"], registry=r)  # fmt: skip
        self.request_seconds = Histogram(
            "appliance_request_duration_seconds", "Time to the end of the response (streams "
            "included)", ["route"], buckets=_REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "appliance_time_to_first_token_seconds", "From admission (queue wait included) to "
            "the first generated text", ["model"], buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "appliance_inter_token_latency_seconds", "Time between successive pieces of text of "
            "one answer", ["model"], buckets=_ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter("appliance_prompt_tokens", "Prompt tokens processed",
                                     ["model"], registry=r)  # fmt: skip
        self.completion_tokens = Counter("appliance_completion_tokens", "Tokens generated",
                                         ["model"], registry=r)  # fmt: skip
        self.key_requests = Counter("appliance_key_requests", "Requests per API key",
                                    ["key"], registry=r)  # fmt: skip
        self.key_tokens = Counter("appliance_key_tokens", "Tokens per API key (in: prompt, "
                                  "out: generated)", ["key", "direction"], registry=r)  # fmt: skip
        self.registry.register(_LiveCollector(services, self))

    def observe_request(self, usage: RequestUsage, duration_s: float) -> None:
        self.requests.labels(usage.route, str(usage.status)).inc()
        self.request_seconds.labels(usage.route).observe(duration_s)
        if usage.key_name is not None:
            self.key_requests.labels(usage.key_name).inc()
            if usage.tokens_in:
                self.key_tokens.labels(usage.key_name, "in").inc(usage.tokens_in)
            if usage.tokens_out:
                self.key_tokens.labels(usage.key_name, "out").inc(usage.tokens_out)

    def observe_tokens(self, model: str, prompt: int, completion: int) -> None:
        self.prompt_tokens.labels(model).inc(prompt)
        self.completion_tokens.labels(model).inc(completion)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Gauges read at scrape time from the daemon's caches."""

    def __init__(self, services: Services, metrics: Metrics) -> None:
        self.services = services
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        services = self.services
        slots_total = GaugeMetricFamily("appliance_slots", "Sequence slots of each loaded model",
                                        labels=["model"])  # fmt: skip
        active = GaugeMetricFamily("appliance_slots_active", "Slots generating now",
                                   labels=["model"])  # fmt: skip
        queue = GaugeMetricFamily("appliance_queue_depth", "Requests waiting for a slot",
                                  labels=["model"])  # fmt: skip
        load = GaugeMetricFamily("appliance_model_load_seconds", "How long the model's last "
                                 "load took", labels=["model"])  # fmt: skip
        loaded = GaugeMetricFamily("appliance_model_loaded", "1 when the model is ready",
                                   labels=["model", "device", "backend"])  # fmt: skip
        scheduled = services.scheduler.snapshot()
        for model in services.engine.loaded():
            busy, waiting = scheduled.get(model.name, (0, 0))
            slots_total.add_metric([model.name], model.slots or 0)
            active.add_metric([model.name], busy)
            queue.add_metric([model.name], waiting)
            if model.load_seconds is not None:
                load.add_metric([model.name], model.load_seconds)
            loaded.add_metric([model.name, model.device_id, model.backend],
                              1.0 if model.state == "ready" else 0.0)  # fmt: skip
        yield from (slots_total, active, queue, load, loaded)
        hits = CounterMetricFamily("appliance_prefix_cache_hits", "Requests that reused cached "
                                   "prompt KV", labels=["model"])  # fmt: skip
        hit_tokens = CounterMetricFamily("appliance_prefix_cache_tokens", "Prompt tokens served "
                                         "from cached KV", labels=["model"])  # fmt: skip
        # Whether speculative decoding pays on this box: guesses decoded and guesses kept
        # (each kept one a decode step saved), by where they came from.
        by_source = ["model", "source"]
        drafted = CounterMetricFamily("appliance_draft_tokens", "Tokens guessed ahead and "
                                      "decoded to verify them", labels=by_source)  # fmt: skip
        accepted = CounterMetricFamily("appliance_draft_accepted_tokens", "Guessed tokens the "
                                       "model agreed with", labels=by_source)  # fmt: skip
        for name, stats in self.metrics.stats.items():
            hits.add_metric([name], stats.prefix_cache_hits)
            hit_tokens.add_metric([name], stats.prefix_cache_tokens)
            drafted.add_metric([name, "lookup"], stats.lookup_draft_tokens)
            drafted.add_metric([name, "model"], stats.model_draft_tokens)
            accepted.add_metric([name, "lookup"], stats.lookup_draft_accepted)
            accepted.add_metric([name, "model"], stats.model_draft_accepted)
        yield from (hits, hit_tokens, drafted, accepted)
        yield from _device_gauges(services)
        yield from _upstream_gauges(services)


def _upstream_gauges(services: Services) -> Iterator[GaugeMetricFamily]:
    """Each upstream server's health, in-flight requests and health-check latency (its
    traffic is counted with the local models' by model name: tokens, TTFT, requests)."""
    labels = ["model", "url"]
    up = GaugeMetricFamily("appliance_upstream_up", "1 when the upstream server's last check "
                           "or request succeeded", labels=labels)  # fmt: skip
    flying = GaugeMetricFamily("appliance_upstream_in_flight", "Requests being answered by "
                               "the upstream server", labels=labels)  # fmt: skip
    latency = GaugeMetricFamily("appliance_upstream_check_latency_seconds", "Round trip of "
                                "the last health check", labels=labels)  # fmt: skip
    for state in services.upstreams.states() if services.upstreams else []:
        values = [state.name, state.url]
        up.add_metric(values, 1.0 if state.health == "up" else 0.0)
        flying.add_metric(values, state.in_flight)
        if state.latency_ms is not None:
            latency.add_metric(values, state.latency_ms / 1000)
    yield from (up, flying, latency)


def _device_gauges(services: Services) -> Iterator[GaugeMetricFamily]:
    families = {
        "utilization": GaugeMetricFamily("appliance_device_utilization_ratio", "Busy fraction "
                                         "(0-1)", labels=["device"]),
        "used": GaugeMetricFamily("appliance_device_memory_used_bytes", "Device memory in use",
                                  labels=["device"]),
        "total": GaugeMetricFamily("appliance_device_memory_total_bytes", "Device memory",
                                   labels=["device"]),
        "temp": GaugeMetricFamily("appliance_device_temperature_celsius", "Temperature",
                                  labels=["device"]),
        "power": GaugeMetricFamily("appliance_device_power_watts", "Power draw",
                                   labels=["device"]),
    }  # fmt: skip
    mib = 1024 * 1024
    for device_id, sample in services.devices.telemetry().items():
        if not sample.available:
            continue
        if sample.utilization_pct is not None:
            families["utilization"].add_metric([device_id], sample.utilization_pct / 100)
        if sample.memory_used_mib is not None:
            families["used"].add_metric([device_id], sample.memory_used_mib * mib)
        if sample.memory_total_mib is not None:
            families["total"].add_metric([device_id], sample.memory_total_mib * mib)
        if sample.temperature_c is not None:
            families["temp"].add_metric([device_id], sample.temperature_c)
        if sample.power_w is not None:
            families["power"].add_metric([device_id], sample.power_w)
    yield from families.values()


async def _scrape(services: Services) -> Response:
    metrics = services.metrics
    if metrics is None:
        return Response("metrics are off (metrics.enabled = false)\n", status_code=404)
    for model in services.engine.loaded():
        if model.state == "ready":
            try:
                metrics.stats[model.name] = await services.engine.stats(model.name)
            except ApplianceError:
                metrics.stats.pop(model.name, None)  # a worker restarting: skip it this time
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


keyed_router = APIRouter(tags=["metrics"], dependencies=[ApiKeyDep])


@keyed_router.get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics_keyed(request: Request) -> Response:
    return await _scrape(request.app.state.services)


def create_metrics_app(services: Services) -> FastAPI:
    """`/metrics` alone and without a key, for `metrics.listen` (a scrape-only address)."""
    app = FastAPI(title="AI appliance metrics", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services

    @app.get("/metrics", include_in_schema=False)
    async def metrics_open() -> Response:
        return await _scrape(services)

    return app
