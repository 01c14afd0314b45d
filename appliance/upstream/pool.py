"""UpstreamPool: send requests for upstream model names to their servers, and watch them.

The API treats it like the engine manager (`ensure_ready`, `state_of`, `admit`, `generate`):
`api/openai/serving.py` picks it for a model whose format is `upstream`, so the OpenAI and
Ollama routes, the scheduler's per-key fair share, metrics and audit cover upstream traffic
through the same code as local models.

- Several endpoints may serve one name: each request goes to the one with the fewest
  requests in flight (healthy ones first).
- A connection error, a timeout while connecting or a 502/503/504 before the first byte has
  reached the client moves the request to the next endpoint; after that, the client gets an
  error event, since what it has already been sent cannot be taken back.
- Health checks (`GET <url>/models`) every `upstream.health_interval_s` mark endpoints up or
  down (down: no connection, the key refused, or a 5xx answer); a failed request marks its
  endpoint down at once, a successful one marks it up.
- The client going away closes the upstream stream (the `async with` around it), so the
  upstream stops generating too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from appliance.config import Config
from appliance.engine.messages import Delta, Done, Submit
from appliance.errors import EngineDead, NotFound, UpstreamError, UsageError
from appliance.records import (
    LoadedModel,
    ModelFormat,
    ModelInfo,
    ModelState,
    UpstreamHealth,
    UpstreamState,
)
from appliance.upstream.registry import UpstreamRegistry, UpstreamSpec, check_name, normalise_url
from appliance.upstream.wire import (
    AnswerReader,
    StreamError,
    chat_body,
    completion_body,
    error_message,
)

log = logging.getLogger("appliance.upstream")

_FAILOVER_STATUSES = {502, 503, 504}
"""Answers that mean "this server cannot take it now": another replica may."""


@dataclass(eq=False)
class _Endpoint:
    spec: UpstreamSpec
    client: httpx.AsyncClient
    health: UpstreamHealth = UpstreamHealth.UNKNOWN
    error: str = ""
    latency_ms: float | None = None
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    checked_at: float | None = None
    added: float = field(default_factory=time.monotonic)

    @property
    def label(self) -> str:
        return f"upstream {self.spec.name!r} at {self.spec.url}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}

    def state(self) -> UpstreamState:
        return UpstreamState(
            **self.spec.public().model_dump(), health=self.health, error=self.error,
            latency_ms=self.latency_ms, in_flight=self.in_flight, requests=self.requests,
            failures=self.failures, checked_at=self.checked_at,
        )  # fmt: skip

    def mark_down(self, reason: str) -> None:
        if self.health != UpstreamHealth.DOWN:
            log.warning("%s is down: %s", self.label, reason)
        self.health, self.error = UpstreamHealth.DOWN, reason

    def mark_up(self) -> None:
        if self.health != UpstreamHealth.UP:
            log.info("%s is up", self.label)
        self.health, self.error = UpstreamHealth.UP, ""


def _describe(error: Exception) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(error, httpx.ReadTimeout):
        return "no answer within upstream.read_timeout_s"
    if isinstance(error, httpx.ConnectError):
        # httpx says "All connection attempts failed"; the OS error under it says why.
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, OSError) and cause.strerror:
                return cause.strerror.lower()
            cause = cause.__cause__ or cause.__context__
        return str(error) or "connection failed"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return str(error) or type(error).__name__


class UpstreamPool:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = UpstreamRegistry(config.state_dir)
        self._endpoints: list[_Endpoint] = []
        self._checker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # --- configuration ----------------------------------------------------------------------

    def _client(self, spec: UpstreamSpec) -> httpx.AsyncClient:
        settings = self.config.upstream
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s, read=settings.read_timeout_s, write=60.0,
            pool=settings.connect_timeout_s,
        )  # fmt: skip
        verify: bool | str = spec.ca_file or spec.verify_tls
        limits = httpx.Limits(max_connections=spec.max_streams + 2, max_keepalive_connections=8)
        return httpx.AsyncClient(timeout=timeout, verify=verify, limits=limits, trust_env=False)

    def load(self) -> None:
        """Read the upstreams file (the daemon calls this at start)."""
        self._endpoints = [_Endpoint(spec, self._client(spec)) for spec in self.registry.load()]
        if self._endpoints:
            names = sorted({e.spec.name for e in self._endpoints})
            log.info("upstreams: %s (%d endpoints)", ", ".join(names), len(self._endpoints))

    def names(self) -> list[str]:
        return sorted({e.spec.name for e in self._endpoints})

    def serves(self, name: str) -> bool:
        return any(e.spec.name == name for e in self._endpoints)

    def infos(self) -> list[ModelInfo]:
        return [self.info(name) for name in self.names()]

    def info(self, name: str) -> ModelInfo:
        urls = [e.spec.url for e in self._endpoints if e.spec.name == name]
        added = min((e.added for e in self._endpoints if e.spec.name == name), default=0.0)
        return ModelInfo(
            name=name, format=ModelFormat.UPSTREAM, path="", sha256="", size_bytes=0,
            architecture="upstream", source=", ".join(urls),
            imported_at=time.time() - (time.monotonic() - added),
        )  # fmt: skip

    def states(self) -> list[UpstreamState]:
        return [e.state() for e in self._endpoints]

    async def add(self, spec: UpstreamSpec) -> UpstreamState:
        """Add an endpoint (or replace the one with the same name and URL), then check it."""
        spec = spec.model_copy(update={"name": check_name(spec.name),
                                       "url": normalise_url(spec.url)})  # fmt: skip
        async with self._lock:
            specs = [
                e.spec
                for e in self._endpoints
                if (e.spec.name, e.spec.url) != (spec.name, spec.url)
            ]
            self.registry.save([*specs, spec])
            old = [e for e in self._endpoints if (e.spec.name, e.spec.url) == (spec.name, spec.url)]
            endpoint = _Endpoint(spec, self._client(spec))
            self._endpoints = [e for e in self._endpoints if e not in old] + [endpoint]
        for stale in old:
            await stale.client.aclose()
        await self._check(endpoint)
        return endpoint.state()

    async def remove(self, name: str, url: str | None = None) -> list[UpstreamState]:
        """Remove a name's endpoints (or only the one at `url`); NotFound when none matched."""
        wanted = normalise_url(url) if url else None
        async with self._lock:
            gone = [
                e
                for e in self._endpoints
                if e.spec.name == name and (wanted is None or e.spec.url == wanted)
            ]
            if not gone:
                known = ", ".join(self.names()) or "none configured"
                where = f" at {wanted}" if wanted else ""
                raise NotFound(f"no upstream {name!r}{where}; upstreams: {known}")
            self.registry.save([e.spec for e in self._endpoints if e not in gone])
            self._endpoints = [e for e in self._endpoints if e not in gone]
        for endpoint in gone:
            await endpoint.client.aclose()  # requests still streaming from it end with an error
        return [e.state() for e in gone]

    # --- health -----------------------------------------------------------------------------

    def start(self) -> None:
        self._checker = asyncio.create_task(self._check_forever(), name="upstream-health")

    async def shutdown(self) -> None:
        if self._checker:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        for endpoint in self._endpoints:
            await endpoint.client.aclose()

    async def _check_forever(self) -> None:
        while True:
            try:
                await asyncio.gather(*(self._check(e) for e in list(self._endpoints)))
            except Exception:  # a bug in one check must not end health checking for good
                log.exception("upstream health check failed")
            await asyncio.sleep(self.config.upstream.health_interval_s)

    async def _check(self, endpoint: _Endpoint) -> None:
        started = time.perf_counter()
        try:
            response = await endpoint.client.get(
                f"{endpoint.spec.url}/models", headers=endpoint.headers(),
                timeout=self.config.upstream.connect_timeout_s,
            )  # fmt: skip
        except (httpx.HTTPError, OSError) as error:
            endpoint.mark_down(_describe(error))
        else:
            endpoint.latency_ms = round((time.perf_counter() - started) * 1000, 1)
            if response.status_code in (401, 403):
                endpoint.mark_down(f"refused the API key (HTTP {response.status_code})")
            elif response.status_code >= 500:
                endpoint.mark_down(f"HTTP {response.status_code} from GET /models")
            else:
                # Answering at all is what counts: a server without a model list (404) still
                # serves chat.
                endpoint.mark_up()
        endpoint.checked_at = time.time()

    # --- the engine interface the API uses ----------------------------------------------------

    def _of(self, name: str) -> list[_Endpoint]:
        return [e for e in self._endpoints if e.spec.name == name]

    def state_of(self, name: str) -> LoadedModel | None:
        endpoints = self._of(name)
        if not endpoints:
            return None
        usable = [e for e in endpoints if e.health != UpstreamHealth.DOWN]
        record = LoadedModel(
            name=name, state=ModelState.READY if usable else ModelState.FAILED,
            device_id="upstream", engine="upstream", backend="upstream",
            slots=sum(e.spec.max_streams for e in usable or endpoints),
            placement=f"forwarded to {len(endpoints)} upstream server(s)",
            error="" if usable else "; ".join(f"{e.spec.url}: {e.error}" for e in endpoints),
        )  # fmt: skip
        return record

    async def ensure_ready(self, info: ModelInfo, wait: bool = True) -> None:
        """Nothing to load; fails only when the name has no endpoints left."""
        if not self._of(info.name):
            raise EngineDead(f"upstream {info.name!r} was removed")

    def admit(self, info: ModelInfo) -> None:
        """Admission is the scheduler's (`state_of(...).slots`): nothing more to refuse here."""

    def keep_alive(self, name: str, seconds: float) -> None:
        """Upstream models are never unloaded by the appliance."""

    def expires_at(self, name: str) -> float | None:
        return None

    async def embed(self, info: ModelInfo, inputs: list[str], normalize: bool) -> object:
        raise UsageError(
            f"model {info.name!r} is an upstream model: the appliance forwards chat and text "
            "completions to upstreams, not embeddings; use a local embedding model"
        )

    def _pick(self, name: str, tried: set[_Endpoint]) -> _Endpoint | None:
        candidates = [e for e in self._of(name) if e not in tried]
        if not candidates:
            return None
        # Healthy (or not yet checked) first; a replica marked down is still tried last,
        # since it may have come back since its last check.
        return min(
            candidates,
            key=lambda e: (e.health == UpstreamHealth.DOWN, e.in_flight, e.requests),
        )

    async def generate(self, info: ModelInfo, submit: Submit) -> AsyncIterator[Delta | Done]:
        tried: set[_Endpoint] = set()
        failures: list[str] = []
        while True:
            endpoint = self._pick(info.name, tried)
            if endpoint is None:
                if not tried:
                    raise EngineDead(f"upstream {info.name!r} has no servers configured")
                raise UpstreamError(
                    f"no upstream server for {info.name!r} could take the request: "
                    + "; ".join(failures)
                    + " (`appliance upstream list` shows their health)"
                )
            tried.add(endpoint)
            started = False
            try:
                # Closed explicitly: a client going away must close the upstream stream now,
                # not when the garbage collector finalises the generator.
                async with contextlib.aclosing(self._forward(endpoint, submit)) as stream:
                    async for message in stream:
                        started = True
                        yield message
                return
            except _TryNext as failure:
                if started:  # never: _TryNext is raised before the first message only
                    raise UpstreamError(str(failure)) from None
                failures.append(f"{endpoint.spec.url}: {failure}")
                log.warning("%s failed before answering (%s); trying the next one",
                            endpoint.label, failure)  # fmt: skip

    async def _forward(self, endpoint: _Endpoint, submit: Submit) -> AsyncIterator[Delta | Done]:
        spec = endpoint.spec
        if submit.upstream_body is not None:
            path, body = "/chat/completions", chat_body(submit, spec.upstream_model)
        else:
            path, body = "/completions", completion_body(submit, spec.upstream_model)
        reader = AnswerReader(submit.id, submit.n)
        endpoint.in_flight += 1
        endpoint.requests += 1
        sent_any = False
        try:
            async with endpoint.client.stream(
                "POST", f"{spec.url}{path}", json=body, headers=endpoint.headers()
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._refused(endpoint, response.status_code, error_message(response.content))
                async for line in response.aiter_lines():
                    for message in reader.line(line):
                        sent_any = True
                        yield message
                    if reader.finished:
                        break
            if not reader.finished:
                raise httpx.RemoteProtocolError("the stream ended before [DONE]")
            endpoint.mark_up()
            for closing in reader.finish():
                yield closing
        except (httpx.TransportError, OSError) as error:
            endpoint.failures += 1
            reason = _describe(error)
            endpoint.mark_down(reason)
            if not sent_any:
                raise _TryNext(reason) from None
            raise UpstreamError(
                f"{endpoint.label} failed in the middle of the answer: {reason}"
            ) from None
        except StreamError as error:
            endpoint.failures += 1
            raise UpstreamError(f"{endpoint.label} sent a broken answer: {error}") from None
        finally:
            endpoint.in_flight -= 1

    def _refused(self, endpoint: _Endpoint, status: int, detail: str) -> None:
        """Raise the error an upstream's HTTP error answer means for our client."""
        endpoint.failures += 1
        label = endpoint.label
        if status in (401, 403):
            endpoint.mark_down(f"refused the API key (HTTP {status})")
            raise UpstreamError(
                f"{label} refused the appliance's API key (HTTP {status}: {detail}); the "
                f"administrator sets it with `appliance upstream add {endpoint.spec.name} "
                f"{endpoint.spec.url} --api-key KEY`"
            )
        if status in _FAILOVER_STATUSES:
            endpoint.mark_down(f"HTTP {status}: {detail}")
            raise _TryNext(f"HTTP {status}: {detail}")
        if status == 404:
            raise UpstreamError(
                f"{label} answered 404 ({detail}): it may not serve model "
                f"{endpoint.spec.upstream_model!r}; set the upstream's own model id with "
                f"`appliance upstream add ... --model ID`"
            )
        if 400 <= status < 500:
            # The request itself (too long a prompt, a bad parameter): the client can fix it.
            raise UsageError(f"{label} refused the request (HTTP {status}): {detail}")
        raise UpstreamError(f"{label} failed (HTTP {status}): {detail}")


class _TryNext(Exception):
    """This endpoint failed before anything reached the client: try another one."""
