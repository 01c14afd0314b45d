"""Every admin command is one admin API call: through the running daemon, or (no daemon) through
the same admin app served in the CLI's process, with the same answers and the same errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers.daemon import APPLIANCE, Daemon, appliance_env, run_cli
from helpers.tiny_gguf import write_tiny_model

# Commands that fail the same way whoever serves them (the messages name no socket or path).
FAILING = [
    ("models", "show", "nope"),
    ("models", "rm", "nope"),
    ("models", "fit", "nope"),
    ("models", "fit", "deepseek-r1-distill-qwen-1.5b:Q9_9"),
    ("keys", "revoke", "nobody-has-this-key"),
    ("models", "template", "nope", "--reset"),
]


@pytest.mark.parametrize("args", FAILING, ids=lambda args: " ".join(args))
def test_an_error_reads_the_same_with_or_without_the_daemon(
    daemon: Daemon, tmp_path: Path, args: tuple[str, ...]
) -> None:
    through_daemon = run_cli(daemon.home, *args, check=False)
    in_process = run_cli(tmp_path, *args, check=False)
    assert through_daemon.returncode == in_process.returncode != 0
    assert through_daemon.stderr.startswith("error: ")
    # The installed models differ between the two homes; the listing follows a semicolon.
    assert through_daemon.stderr.split(";")[0] == in_process.stderr.split(";")[0]


def test_loading_without_a_daemon_says_it_needs_the_daemon(
    tmp_path: Path, embedded_model: Path
) -> None:
    run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smol")
    result = run_cli(tmp_path, "models", "load", "smol", check=False)
    assert result.returncode == 3
    assert "needs the appliance daemon, which is not running" in result.stderr
    assert "appliance serve" in result.stderr and "Traceback" not in result.stderr


def test_a_stale_socket_left_by_a_stopped_daemon_counts_as_no_daemon(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "admin.sock"))
    stale.close()  # the file stays; nothing listens
    created = json.loads(run_cli(tmp_path, "keys", "create", "--name", "a", "--json").stdout)
    assert created["info"]["name"] == "a"


def test_a_socket_this_user_may_not_open_names_the_admin_group() -> None:
    # A listening socket with the daemon's mode (0660, another group): as root the test runs
    # the CLI as `nobody`, as another user it takes its own permission away (no root bypass).
    home = Path(tempfile.mkdtemp(prefix="not-admin-"))
    os.chmod(home, 0o755)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(home / "admin.sock"))
        listener.listen(1)
        command = [*APPLIANCE, "keys", "list"]
        if os.geteuid() == 0:
            os.chmod(home / "admin.sock", 0o660)
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        else:
            os.chmod(home / "admin.sock", 0)
        result = subprocess.run(
            command, env=appliance_env(home), capture_output=True, text=True, timeout=120
        )
    finally:
        listener.close()
        (home / "admin.sock").unlink()
        os.rmdir(home)
    assert result.returncode == 3, result.stderr
    assert "you are not in the appliance-admin group" in result.stderr
    assert "sudo usermod -aG appliance-admin $USER, then log in again" in result.stderr
    assert "sqlite" not in result.stderr.lower() and "Traceback" not in result.stderr


def test_template_export_fit_media_unload_and_rm_through_the_running_daemon(
    daemon: Daemon, tmp_path: Path
) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    write_tiny_model(stick / "tiny.gguf", "llama", name="tiny-for-admin")
    media = json.loads(run_cli(daemon.home, "models", "media", str(stick), "--json").stdout)
    assert [(f["kind"], Path(f["path"]).name) for f in media[0]["files"]] == [("gguf", "tiny.gguf")]
    run_cli(daemon.home, "models", "import", str(stick / "tiny.gguf"), "--name", "tiny-admin")

    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}[{{ m.content }}]{% endfor %}")
    run_cli(daemon.home, "models", "template", "tiny-admin", str(template))
    shown = run_cli(daemon.home, "models", "template", "tiny-admin", "--show").stdout
    assert shown.strip() == template.read_text()
    run_cli(daemon.home, "models", "template", "tiny-admin", "--reset")
    assert run_cli(daemon.home, "models", "template", "tiny-admin", "--show").stdout.strip() != (
        template.read_text()
    )

    plan = json.loads(run_cli(daemon.home, "models", "fit", "tiny-admin", "--json").stdout)
    assert plan["model"] == "tiny-admin" and plan["devices"][0]["device_id"] == "cpu0"

    exported = json.loads(
        run_cli(daemon.home, "models", "export", "tiny-admin", "-o", "tiny.tar", "--json",
                cwd=tmp_path).stdout
    )  # fmt: skip
    assert exported["path"] == str(tmp_path / "tiny.tar")  # relative to the caller, not the daemon
    assert (tmp_path / "tiny.tar").stat().st_size == exported["size_bytes"]

    # Loading it evicts the shared daemon's default model (engine.max_loaded): put that back.
    try:
        loaded = json.loads(run_cli(daemon.home, "models", "load", "tiny-admin", "--json").stdout)
        assert loaded["state"] == "ready"
        assert run_cli(daemon.home, "models", "unload", "tiny-admin").stderr.strip() == (
            "unloaded tiny-admin"
        )
        again = run_cli(daemon.home, "models", "unload", "tiny-admin").stderr.strip()
        assert again == "tiny-admin was not loaded"
        run_cli(daemon.home, "models", "load", "tiny-admin")
        run_cli(daemon.home, "models", "rm", "tiny-admin")  # unloads it first
        status = json.loads(run_cli(daemon.home, "status", "--json").stdout)
        assert "tiny-admin" not in [m["name"] for m in status["models_loaded"]]
    finally:
        run_cli(daemon.home, "models", "load", "smollm2")
    names = [m["name"] for m in json.loads(run_cli(daemon.home, "models", "list", "--json").stdout)]
    assert names == ["smollm2"]


def test_without_a_daemon_only_device_questions_run_discovery(tmp_path: Path) -> None:
    # An operator's vendor choice that finds nothing fails discovery, as the daemon's start does.
    ascend_only = {"APPLIANCE_DEVICES__DRIVER": "ascend"}  # no Ascend NPU on a test box
    assert run_cli(tmp_path, "keys", "list", "--json", **ascend_only).stdout.strip() == "[]"
    assert run_cli(tmp_path, "models", "list", "--json", **ascend_only).stdout.strip() == "[]"
    devices = run_cli(tmp_path, "devices", "--json", check=False, **ascend_only)
    assert devices.returncode == 2
    assert "devices.driver is 'ascend', but that driver found no device" in devices.stderr
