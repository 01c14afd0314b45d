"""Property-based fuzzing of the public API from the running daemon's own OpenAPI schema.

Schemathesis turns `/openapi.json` into request generators (valid bodies, and invalid ones in
negative mode); every request goes to a real daemon with the real model. What must hold for
each: no 5xx, no traceback in the answer, every 4xx in the error envelope with a message, no
engine failure inside a stream; and over the whole run the worker never restarts and the
daemon log holds no traceback.

The short run in `make test` is derandomised (the same requests each time) and takes well under
a minute; the long run is the same test with more examples and fresh randomness:

    APPLIANCE_FUZZ_EXAMPLES=200 .venv/bin/python -m pytest tests/fuzz -s
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

from appliance.client import AdminClient
from helpers.daemon import Daemon, run_cli, start_daemon, stop_daemon

EXAMPLES = int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "0") or 0)
LONG = EXAMPLES > 0
PER_OPERATION = EXAMPLES or 20
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health")
ENGINE_FAILURES = {"engine_error", "engine_unavailable", "internal_error"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("fuzz")
    run_cli(home, "models", "import", str(embedded_model), "--name", "smollm2")
    handle = start_daemon(
        home,
        APPLIANCE_API__OPENAPI_DOCS="true",
        APPLIANCE_ENGINE__CONTEXT_LENGTH="512",
        APPLIANCE_ENGINE__SLOTS="4",
        # One thread: llama.cpp's threads spin at every step's barrier, and on a busy 2-core
        # box two of them crawl (a 135M model at 2 tokens/s was seen).
        APPLIANCE_ENGINE__THREADS="1",
        # Small answers keep thousands of requests quick; the bounds are what is fuzzed.
        APPLIANCE_ENGINE__MAX_TOKENS="4",
        APPLIANCE_LIMITS__MAX_TOKENS="8",
        APPLIANCE_LIMITS__MAX_CHOICES="2",
        APPLIANCE_LIMITS__MAX_EMBEDDING_INPUTS="4",
    )
    yield handle
    stop_daemon(handle)


def worker_pid(daemon: Daemon) -> int | None:
    with AdminClient(daemon.admin_socket) as admin:
        return admin.status().models_loaded[0].pid


def problems_with(response: schemathesis.Response) -> list[str]:
    found = []
    text = response.text
    if response.status_code >= 500:
        found.append(f"server error {response.status_code}: {text[:300]}")
    if "Traceback" in text:
        found.append(f"traceback in the answer: {text[:300]}")
    if 400 <= response.status_code < 500:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            found.append(f"{response.status_code} without the error envelope: {text[:300]}")
        else:
            if not message:
                found.append(f"{response.status_code} with an empty message")
    # Schemathesis keeps every header as a list of values.
    if "text/event-stream" in str(response.headers.get("content-type", "")):
        for line in text.splitlines():
            if line.startswith("data: {") and '"error"' in line:
                code = json.loads(line.removeprefix("data: "))["error"].get("code")
                if code in ENGINE_FAILURES:
                    found.append(f"engine failure inside a stream: {line[:300]}")
    return found


class Fuzzer:
    """Sends generated requests to the daemon and keeps the tally and what went wrong."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.headers = {"Authorization": f"Bearer {daemon.api_key}"}
        self.session = requests.Session()
        self.tried: Counter[str] = Counter()
        self.failures: list[str] = []

    def run(self, op: Any, mode: GenerationMode) -> None:
        label = f"{op.method.upper()} {op.path}"

        @hypothesis.settings(
            max_examples=PER_OPERATION, deadline=None, database=None, derandomize=not LONG,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )  # fmt: skip
        @hypothesis.given(st.tuples(op.as_strategy(generation_mode=mode), st.booleans()))
        def send(drawn: tuple[Any, bool]) -> None:
            case, real_model = drawn
            # Most generated names match no model (404): half the time name the real one, so
            # that the engine sees the fuzzed fields too.
            if real_model and isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = "smollm2"
            response = case.call(
                base_url=self.daemon.root_url, session=self.session, headers=self.headers,
                timeout=120,
            )  # fmt: skip
            self.tried[f"{label} {response.status_code}"] += 1
            self.failures.extend(
                f"{label} {case.body!r:.300}: {problem}" for problem in problems_with(response)
            )

        try:
            send()
        except hypothesis.errors.Unsatisfiable:
            # No invalid request exists for an operation without input (GET /health).
            assert mode is GenerationMode.NEGATIVE, label


def test_fuzzing_the_public_api_finds_no_server_error_and_no_worker_restart(fuzzed) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.api_key}"}
    schema_json = requests.get(f"{fuzzed.root_url}/openapi.json", headers=headers, timeout=30)
    schema = schemathesis.openapi.from_dict(schema_json.json())
    pid = worker_pid(fuzzed)
    fuzzer = Fuzzer(fuzzed)

    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path in PATHS:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzzer.run(op, mode)

    tried = fuzzer.tried
    total = sum(tried.values())
    print(f"\nfuzzing: {total} requests; by operation and status: {dict(sorted(tried.items()))}")
    assert total >= 6 * PER_OPERATION, tried
    assert fuzzer.failures == [], "\n".join(fuzzer.failures[:20])
    assert worker_pid(fuzzed) == pid, "the worker restarted during the run"
    log = fuzzed.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
