"""A worker killed mid-answer costs that answer, not the daemon."""

from __future__ import annotations

import json
import os
import signal

import httpx
import openai

from appliance.client import AdminClient
from helpers.daemon import Daemon


def test_killed_worker_ends_the_stream_with_an_error_event_and_recovers(daemon: Daemon) -> None:
    with AdminClient(daemon.admin_socket) as admin:
        worker_pid = admin.status().models_loaded[0].pid
    assert worker_pid
    events: list[dict[str, object]] = []
    body = {
        "model": "smollm2",
        "stream": True,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
    }
    headers = {"Authorization": f"Bearer {daemon.api_key}"}
    with httpx.stream(
        "POST", f"{daemon.base_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == 3:
                os.kill(worker_pid, signal.SIGKILL)
    error = events[-1]["error"]
    assert isinstance(error, dict)
    assert error["code"] == "engine_unavailable"
    assert "SIGKILL" in str(error["message"])
    assert daemon.process.poll() is None, "the daemon itself must survive"

    client = openai.OpenAI(base_url=daemon.base_url, api_key=daemon.api_key, max_retries=0)
    answer = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.choices[0].message.content
    with AdminClient(daemon.admin_socket) as admin:
        [model] = admin.status().models_loaded
    assert model.state == "ready" and model.pid != worker_pid
