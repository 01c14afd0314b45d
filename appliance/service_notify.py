"""What the daemon tells systemd (Type=notify) while it starts and runs.

- `STATUS=` while starting: binding, the default model's load progress, the first token.
- `EXTEND_TIMEOUT_USEC=` while a load still makes progress, so a big model on a slow disk is not
  killed by TimeoutStartSec; a load that stops moving gets no extension.
- `READY=1` once both listeners accept connections and the default model has answered one
  token, or when there is nothing to wait for (no model installed, or its load failed: the
  daemon still serves the admin socket so the administrator can fix it; STATUS says why).
- `WATCHDOG=1` every quarter of WatchdogSec=, only while this loop runs and every ready model's
  worker has answered a heartbeat within `engine.hang_timeout_s`; otherwise STATUS names the
  stale worker and systemd restarts the daemon when the watchdog expires.

May import services, records, engine messages, errors and `sd_notify`; not the API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from appliance.engine.client import new_request_id
from appliance.engine.messages import Done, Submit
from appliance.errors import ApplianceError
from appliance.records import ModelState
from appliance.sd_notify import Notifier
from appliance.services import Services

log = logging.getLogger("appliance.notify")

TICK_S = 1.0
EXTEND_S = 90.0
"""How much more time one sign of load progress buys (EXTEND_TIMEOUT_USEC)."""
STALL_S = 60.0
"""A load whose progress has not moved for this long gets no more extensions."""


async def first_token(services: Services, name: str) -> str | None:
    """None when the model answers one token, else why not."""
    try:
        info = services.store.get(name)
        submit = Submit(id=new_request_id(), prompt="Hello", max_tokens=1, temperature=0.0)
        async for message in services.engine.generate(info, submit):
            if isinstance(message, Done):
                return None if message.completion_tokens >= 1 else "it produced no token"
    except ApplianceError as error:
        return error.message
    return "it ended without an answer"


class ServiceNotifier:
    """Runs beside the servers; `run()` returns only when cancelled."""

    def __init__(
        self,
        services: Services,
        notifier: Notifier,
        listening: Callable[[], bool],
        tick_s: float = TICK_S,
    ) -> None:
        self.services = services
        self.notifier = notifier
        self.listening = listening
        # Feed the watchdog at least four times per WatchdogSec=.
        watchdog = notifier.watchdog_s
        self.tick_s = min(tick_s, watchdog / 4) if watchdog else tick_s
        self.ready = False
        self._status = ""
        self._progress: tuple[float | None, float] = (None, time.monotonic())

    async def run(self) -> None:
        if not self.notifier.enabled:
            return
        while True:
            if not self.ready:
                await self._starting()
            else:
                self._running()
            await asyncio.sleep(self.tick_s)

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.status(text)
            log.info("status: %s", text)

    async def _starting(self) -> None:
        services = self.services
        if not self.listening():
            self._set_status("starting: binding the LAN listener and the admin socket")
            return
        name = services.default_model
        if name is None:
            self._go_ready("serving; no model installed: import one with `appliance models import`")
            return
        state = services.engine.state_of(name)
        if state is None or state.state == ModelState.LOADING:
            progress = None if state is None else state.load_progress
            text = f"loading {name}" + (f": {progress:.0%}" if progress else "")
            previous, since = self._progress
            now = time.monotonic()
            if progress != previous:
                self._progress = (progress, now)
                since = now
            if now - since < STALL_S:
                self.notifier.extend_timeout(EXTEND_S)
            self._set_status(text)
            return
        if state.state == ModelState.READY:
            self._set_status(f"{name} loaded; checking that it answers")
            problem = await first_token(services, name)
            if problem is None:
                self._go_ready(self._serving_text())
                return
            self._go_ready(f"degraded: {name} is loaded but does not answer: {problem}")
            return
        self._go_ready(f"degraded: {name} {state.state}: {state.error or 'see the journal'}")

    def _serving_text(self) -> str:
        services = self.services
        ready = [m for m in services.engine.loaded() if m.state == ModelState.READY]
        if ready:
            models = ", ".join(f"{m.name} on {m.device_id}" for m in ready)
            return f"serving {models} at {services.api_url}"
        name = services.default_model
        state = services.engine.state_of(name) if name else None
        if state is None:
            return f"serving at {services.api_url}; no model loaded"
        if state.state == ModelState.LOADING:
            return f"reloading {name}; {state.error}" if state.error else f"reloading {name}"
        return f"degraded: {name} {state.state}: {state.error or 'see the journal'}"

    def _go_ready(self, status: str) -> None:
        self.ready = True
        self._status = status
        self.notifier.ready(status)
        log.info("ready: %s", status)
        self._feed()

    def _running(self) -> None:
        hang = self.services.config.engine.hang_timeout_s
        stale = self.services.engine.stale_heartbeats(hang)
        if stale:
            names = ", ".join(f"{name} ({age:.0f} s)" for name, age in sorted(stale.items()))
            self._set_status(f"engine heartbeat stale: {names}; watchdog not fed")
            return
        self._set_status(self._serving_text())
        self._feed()

    def _feed(self) -> None:
        if self.notifier.watchdog_s is not None:
            self.notifier.watchdog()
