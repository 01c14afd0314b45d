"""`appliance tui` in a real terminal (tmux, 80x24), as an administrator on SSH meets it: the
first-boot wizard, the dashboard, a model unloaded and loaded again, a key created and revoked,
a chat answer.

Set APPLIANCE_CAPTURES=DIR to keep each screen's text (docs/console.md shows them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.daemon import APPLIANCE, Daemon, appliance_env, run_cli, start_daemon, stop_daemon


class Terminal:
    """One tmux session on a private server, so nothing of the user's tmux is touched."""

    def __init__(self, name: str) -> None:
        self.tmux = ["tmux", "-L", name, "-f", "/dev/null"]

    def start(self, command: list[str], env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(
            ("APPLIANCE_", "PYTHON")))  # fmt: skip
        shell = f"env TERM=xterm-256color {exports} {shlex.join(command)}"
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "80", "-y", "24", shell],
                       check=True, env=env)  # fmt: skip
        # A lone Esc must reach the console at once, not wait to become Alt+key.
        subprocess.run([*self.tmux, "set", "-s", "escape-time", "0"], check=True)

    def keys(self, *keys: str, literal: bool = False) -> None:
        subprocess.run([*self.tmux, "send-keys", *(["-l"] if literal else []), *keys], check=True)
        time.sleep(0.3)  # let the console take each burst in order, as a typist would

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p"], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip

    def wait_for(self, pattern: str, timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            shown = self.screen()
            if re.search(pattern, shown):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"the console never showed {pattern!r}; it shows:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run([*self.tmux, "has-session"], capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def own_daemon(tmp_path: Path, embedded_model: Path) -> Iterator[Daemon]:
    run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smollm2")
    handle = start_daemon(tmp_path)
    yield handle
    stop_daemon(handle)


def _keep(name: str, text: str) -> None:
    folder = os.environ.get("APPLIANCE_CAPTURES")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.txt").write_text(text)


def test_an_administrator_runs_the_box_from_the_console_over_ssh(own_daemon: Daemon) -> None:
    term = Terminal(f"appliance-test-{os.getpid()}")
    term.start([*APPLIANCE, "tui", "--refresh", "1"], appliance_env(own_daemon.home))
    try:
        # A fresh box: the wizard comes first.
        _keep("wizard-hardware", term.wait_for(r"First start: 1/5 Hardware found[\s\S]*cpu0"))
        term.keys("Enter")
        term.wait_for(r"2/5 The model to serve[\s\S]*smollm2")
        term.keys("Enter")
        term.wait_for(r"3/5 The first admin key")
        term.keys("c")
        shown = term.wait_for("shown only once")
        term.keys("Enter")
        term.wait_for("Created the admin key first-admin")
        term.keys("n")
        term.wait_for(r"4/5 Who may reach the box")
        term.keys("n")
        _keep("wizard-test", term.wait_for(r"a sane answer[\s\S]*Enter: finish", timeout_s=240))
        term.keys("Enter")
        _keep("dashboard", term.wait_for(r"Loaded models[\s\S]*smollm2\s+ready"))

        term.keys("2")
        term.wait_for(r"smollm2\s+llama\s+Q4_1.*ready")
        term.keys("u")
        term.wait_for(r"smollm2\s+llama\s+Q4_1\s+\S+ MiB\s+-\s")
        term.keys("l")
        _keep("models", term.wait_for(r"smollm2\s+llama\s+Q4_1.*ready"))
        term.keys("t")
        _keep("catalog", term.wait_for(r"DeepSeek-R1"))
        term.keys("t")

        term.keys("3")
        term.wait_for(r"initial")
        term.keys("n")
        term.wait_for("Create an API key")
        term.keys("tmux-key", literal=True)
        term.keys("Enter")
        shown = term.wait_for("shown only once")
        secret = re.search(r"sk-[\w-]{30,}", shown)
        assert secret, shown
        _keep("key-created", shown.replace(secret.group(0), "sk-" + "x" * 43))
        term.keys("Enter")
        term.wait_for(r"tmux-key\s+sk-")
        term.keys("Down")
        term.keys("Down")  # initial, first-admin (made by the wizard), tmux-key
        term.keys("x")
        term.wait_for("Revoke tmux-key")
        term.keys("y")
        _keep("keys", term.wait_for(r"tmux-key.*revoked"))

        term.keys("4")
        term.wait_for(r"Model:.*smollm2")
        term.keys("Name the capital of France.", literal=True)
        term.keys("Enter")
        _keep("chat", term.wait_for(r"TTFT [\d.]+ s · [\d.]+ tok/s"))
        term.keys("Escape")

        term.keys("5")
        _keep("logs", term.wait_for(r"Daemon log, INFO and above[\s\S]*INFO"))
        term.keys("6")
        _keep("settings", term.wait_for(r"api\.listen\s+127\.0\.0\.1"))
        term.keys("?")
        _keep("help", term.wait_for("Everywhere:"))
        term.keys("Escape")
        term.keys("q")
        deadline = time.monotonic() + 30
        while term.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not term.alive(), "q quits the console"
    finally:
        term.close()
    keys = json.loads(run_cli(own_daemon.home, "keys", "list", "--json").stdout)
    assert [k["revoked"] for k in keys if k["name"] == "tmux-key"] == [True]
    assert [k["scope"] for k in keys if k["name"] == "first-admin"] == ["admin"]
    status = json.loads(run_cli(own_daemon.home, "status", "--json").stdout)
    assert status["setup_complete"] is True
