"""The hook runner against real executables (shell scripts) in temp folders.

Covers order, environment, JSON stdin, timeouts that kill whole process groups (grandchildren
included), failures that do not stop later hooks, skipped files, and the async twin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.firmware_hooks import (
    OUTPUT_TAIL_BYTES,
    HookEvent,
    HookRunner,
    discover_hooks,
    run_hooks,
    run_hooks_async,
)

# Long enough that a hook still running at the end of a test is certainly ours to blame.
LONG_SLEEP = "300"


def write_hook(folder: Path, name: str, body: str, *, mode: int = 0o755) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def event_dir(hooks_dir: Path, event: HookEvent) -> Path:
    return hooks_dir / f"{event}.d"


def is_dead(pid: int, wait_s: float = 1.0) -> bool:
    """Gone (or a zombie) within `wait_s`: a killed process may still be finishing its exit
    after its pipes closed, which is when the runner returns."""
    deadline = time.monotonic() + wait_s
    while not _is_dead_now(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _is_dead_now(pid: int) -> bool:
    """Gone, or a zombie waiting for a reaper that is not ours (containers may lack one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat_fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True  # reaped while we looked (a vanishing /proc entry reads as ESRCH)
    return stat_fields[0] == "Z"


def read_pid(path: Path) -> int:
    # The hook writes the pid before sleeping; wait briefly in case the test got here first.
    for _ in range(100):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    return tmp_path / "hooks.d"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def recording_hook(folder: Path, name: str, out: Path) -> None:
    """A hook that appends its name to a log and saves its environment and stdin."""
    write_hook(
        folder,
        name,
        f'echo "{name}" >> "{out}/order"\n'
        f'cat > "{out}/{name}.stdin"\n'
        f'env > "{out}/{name}.env"\n'
        f'echo "hello from {name}"',
    )


def parse_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_hooks_run_in_name_order_with_event_env_and_json_stdin(hooks_dir: Path, out: Path) -> None:
    folder = event_dir(hooks_dir, HookEvent.DEVICE_ADDED)
    for name in ("20-second", "90-last", "05-first"):
        recording_hook(folder, name, out)
    payload = {"device": {"vendor": "nvidia", "index": 0}, "path": Path("/dev/nvidia0")}

    results = run_hooks(
        HookEvent.DEVICE_ADDED,
        payload,
        hooks_dir=hooks_dir,
        env={"APPLIANCE_DEVICE_ID": "nvidia:0"},
    )

    assert [r.name for r in results] == ["05-first", "20-second", "90-last"]
    assert (out / "order").read_text().split() == ["05-first", "20-second", "90-last"]
    for result in results:
        assert result.ok and result.exit_code == 0 and not result.timed_out
        assert result.path == folder / result.name
        assert result.stdout_tail == f"hello from {result.name}\n"
        env = parse_env(out / f"{result.name}.env")
        assert env["APPLIANCE_EVENT"] == "device-added"
        assert env["APPLIANCE_DEVICE_ID"] == "nvidia:0"
        # Paths and other non-JSON values arrive as strings rather than failing the event.
        assert json.loads((out / f"{result.name}.stdin").read_text()) == {
            "device": {"vendor": "nvidia", "index": 0},
            "path": "/dev/nvidia0",
        }


def test_no_payload_sends_an_empty_json_object(hooks_dir: Path, out: Path) -> None:
    recording_hook(event_dir(hooks_dir, HookEvent.BOOT), "10-boot", out)

    run_hooks("boot", hooks_dir=hooks_dir)

    assert json.loads((out / "10-boot.stdin").read_text()) == {}


def test_hook_past_its_timeout_is_killed_with_its_grandchild(hooks_dir: Path, out: Path) -> None:
    write_hook(
        event_dir(hooks_dir, HookEvent.MODEL_LOADING),
        "10-hangs",
        f'sleep {LONG_SLEEP} &\necho $! > "{out}/grandchild"\necho started\nsleep {LONG_SLEEP}',
    )

    started = time.monotonic()
    [result] = run_hooks(
        HookEvent.MODEL_LOADING, hooks_dir=hooks_dir, timeout_s=0.5, kill_grace_s=2.0
    )

    assert result.timed_out and not result.ok
    assert result.exit_code == -signal.SIGTERM
    assert result.stdout_tail == "started\n"
    assert 0.5 <= result.duration_s < 5 and time.monotonic() - started < 5
    assert is_dead(read_pid(out / "grandchild"))


def test_grandchild_ignoring_sigterm_gets_sigkill_after_the_grace(
    hooks_dir: Path, out: Path
) -> None:
    # An ignored signal stays ignored across exec, so this sleep shrugs off SIGTERM.
    write_hook(
        event_dir(hooks_dir, HookEvent.UPDATE),
        "10-stubborn",
        f"(trap '' TERM; exec sleep {LONG_SLEEP}) &\n"
        f'echo $! > "{out}/grandchild"\nsleep {LONG_SLEEP}',
    )

    [result] = run_hooks(HookEvent.UPDATE, hooks_dir=hooks_dir, timeout_s=0.3, kill_grace_s=0.5)

    assert result.timed_out
    assert result.duration_s >= 0.3 + 0.5
    assert is_dead(read_pid(out / "grandchild"))


def test_processes_left_behind_by_a_finished_hook_are_killed(hooks_dir: Path, out: Path) -> None:
    write_hook(
        event_dir(hooks_dir, HookEvent.BOOT),
        "10-leaves-a-child",
        f'sleep {LONG_SLEEP} >/dev/null 2>&1 &\necho $! > "{out}/leftover"\nexit 0',
    )

    [result] = run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir, timeout_s=10, kill_grace_s=2)

    assert result.ok and not result.timed_out
    assert result.duration_s < 5
    assert is_dead(read_pid(out / "leftover"))


def test_finished_hook_is_not_held_up_by_a_child_keeping_its_output_open(
    hooks_dir: Path, out: Path
) -> None:
    # The usual mistake: `daemon &` without redirecting, so the child keeps the hook's stdout.
    write_hook(
        event_dir(hooks_dir, HookEvent.BOOT),
        "10-forgot-to-redirect",
        f'sleep {LONG_SLEEP} &\necho $! > "{out}/leftover"\necho done',
    )

    [result] = run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir, timeout_s=10, kill_grace_s=2)

    assert result.ok and not result.timed_out
    assert result.stdout_tail == "done\n"
    assert result.duration_s < 5
    assert is_dead(read_pid(out / "leftover"))


def test_failing_hook_is_reported_and_the_next_hook_still_runs(hooks_dir: Path, out: Path) -> None:
    folder = event_dir(hooks_dir, HookEvent.MODEL_LOADED)
    write_hook(folder, "10-fails", "echo 'driver too old' >&2\nexit 3")
    recording_hook(folder, "20-runs-anyway", out)

    results = run_hooks(HookEvent.MODEL_LOADED, hooks_dir=hooks_dir)

    assert [(r.name, r.exit_code, r.ok) for r in results] == [
        ("10-fails", 3, False),
        ("20-runs-anyway", 0, True),
    ]
    assert results[0].stderr_tail == "driver too old\n"
    assert (out / "order").read_text().split() == ["20-runs-anyway"]


def test_hook_that_cannot_be_executed_is_reported_not_raised(hooks_dir: Path) -> None:
    folder = event_dir(hooks_dir, HookEvent.BOOT)
    folder.mkdir(parents=True)
    bad = folder / "10-bad-interpreter"
    bad.write_text("#!/nonexistent/interpreter\n")
    bad.chmod(0o755)

    [result] = run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir)

    assert result.exit_code == 127 and not result.ok
    assert "cannot execute" in result.stderr_tail


def test_non_executable_and_backup_files_are_skipped(
    hooks_dir: Path, out: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = event_dir(hooks_dir, HookEvent.DEVICE_REMOVED)
    recording_hook(folder, "10-real", out)
    write_hook(folder, "15-not-executable", "exit 0", mode=0o644)
    write_hook(folder, "17-world-writable", "exit 0", mode=0o757)
    for backup in (
        "20-editor~",
        ".30-hidden",
        "40-hook.dpkg-old",
        "41-hook.dpkg-dist",
        "50-hook.rpmnew",
        "51-hook.rpmsave",
    ):
        write_hook(folder, backup, f'echo "{backup}" >> "{out}/order"')
    (folder / "60-a-folder").mkdir()
    (folder / "70-dangling").symlink_to(folder / "missing")
    (folder / "80-linked").symlink_to(folder / "10-real")

    with caplog.at_level(logging.DEBUG, logger="appliance.hooks"):
        results = run_hooks(HookEvent.DEVICE_REMOVED, hooks_dir=hooks_dir)

    # A symlink to an executable runs its target: the box's own hooks may be linked in.
    assert [r.name for r in results] == ["10-real", "80-linked"]
    assert (out / "order").read_text().split() == ["10-real", "10-real"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("15-not-executable" in w and "not executable" in w for w in warnings)
    assert any("17-world-writable" in w and "world-writable" in w for w in warnings)
    assert any("70-dangling" in w and "dangling" in w for w in warnings)
    assert not any("~" in w or "dpkg" in w or "rpm" in w for w in warnings)


def test_missing_hooks_dir_or_event_folder_means_no_hooks(tmp_path: Path) -> None:
    assert run_hooks(HookEvent.BOOT, hooks_dir=tmp_path / "absent") == []
    (tmp_path / "hooks.d" / "update.d").mkdir(parents=True)
    assert run_hooks(HookEvent.BOOT, hooks_dir=tmp_path / "hooks.d") == []
    assert discover_hooks(tmp_path / "hooks.d", "update") == []


def test_output_keeps_only_the_last_4_kib(hooks_dir: Path) -> None:
    write_hook(
        event_dir(hooks_dir, HookEvent.BOOT),
        "10-chatty",
        'i=0\nwhile [ $i -lt 5000 ]; do echo "line $i of noise"; i=$((i+1)); done\n'
        "echo the-end\necho err-end >&2",
    )

    [result] = run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir)

    assert len(result.stdout_tail.encode()) == OUTPUT_TAIL_BYTES
    assert result.stdout_tail.endswith("line 4999 of noise\nthe-end\n")
    assert result.stderr_tail == "err-end\n"


def test_hook_that_ignores_stdin_does_not_fail_on_a_large_payload(hooks_dir: Path) -> None:
    write_hook(event_dir(hooks_dir, HookEvent.BOOT), "10-ignores-stdin", "exit 0")

    [result] = run_hooks(HookEvent.BOOT, {"blob": "x" * 1_000_000}, hooks_dir=hooks_dir)

    assert result.ok


def test_results_are_logged(hooks_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = event_dir(hooks_dir, HookEvent.BOOT)
    write_hook(folder, "10-ok", "exit 0")
    write_hook(folder, "20-bad", "echo 'no device' >&2\nexit 1")

    with caplog.at_level(logging.INFO, logger="appliance.hooks"):
        run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir)

    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(lvl == logging.INFO and "boot.d/10-ok succeeded" in m for lvl, m in messages)
    assert any(
        lvl == logging.WARNING and "boot.d/20-bad failed with exit 1" in m and "no device" in m
        for lvl, m in messages
    )


@pytest.mark.parametrize("env", [{"PATH": "/tmp"}, {"APPLIANCE_EVENT": "boot"}, {"APPLIANCE_X": 1}])
def test_environment_outside_appliance_prefix_is_refused(
    hooks_dir: Path, env: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir, env=env)  # type: ignore[arg-type]


def test_unknown_event_is_refused(hooks_dir: Path) -> None:
    with pytest.raises(ValueError):
        run_hooks("reboot", hooks_dir=hooks_dir)


def test_event_names_are_the_folder_names() -> None:
    assert [str(e) for e in HookEvent] == [
        "boot",
        "device-added",
        "device-removed",
        "model-loading",
        "model-loaded",
        "model-unloaded",
        "update",
    ]


def test_runner_takes_folder_and_timeout_from_config(tmp_path: Path) -> None:
    config = Config(home=tmp_path, hooks={"timeout_s": 7.5})

    runner = HookRunner.from_config(config)

    assert runner.hooks_dir == tmp_path / "hooks.d"
    assert runner.timeout_s == 7.5


async def test_sync_runner_refuses_to_block_a_running_loop(hooks_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="run_hooks_async"):
        run_hooks(HookEvent.BOOT, hooks_dir=hooks_dir)


# --- async twin ----------------------------------------------------------------------------


async def test_async_hooks_run_in_order_with_env_and_stdin(hooks_dir: Path, out: Path) -> None:
    folder = event_dir(hooks_dir, HookEvent.MODEL_LOADING)
    for name in ("30-c", "10-a", "20-b"):
        recording_hook(folder, name, out)

    results = await run_hooks_async(
        HookEvent.MODEL_LOADING,
        {"model": "deepseek-r1-distill-qwen-1.5b"},
        hooks_dir=hooks_dir,
        env={"APPLIANCE_MODEL": "deepseek-r1-distill-qwen-1.5b"},
    )

    assert [r.name for r in results] == ["10-a", "20-b", "30-c"]
    assert (out / "order").read_text().split() == ["10-a", "20-b", "30-c"]
    assert all(r.ok for r in results)
    env = parse_env(out / "10-a.env")
    assert env["APPLIANCE_EVENT"] == "model-loading"
    assert env["APPLIANCE_MODEL"] == "deepseek-r1-distill-qwen-1.5b"
    assert json.loads((out / "20-b.stdin").read_text()) == {
        "model": "deepseek-r1-distill-qwen-1.5b"
    }


async def test_async_timeout_kills_hook_and_grandchild_and_next_hook_runs(
    hooks_dir: Path, out: Path
) -> None:
    folder = event_dir(hooks_dir, HookEvent.BOOT)
    write_hook(
        folder,
        "10-hangs",
        f'sleep {LONG_SLEEP} &\necho $! > "{out}/grandchild"\nsleep {LONG_SLEEP}',
    )
    recording_hook(folder, "20-next", out)

    runner = HookRunner(hooks_dir=hooks_dir, timeout_s=0.5, kill_grace_s=2.0)
    results = await runner.run_async(HookEvent.BOOT)

    assert [(r.name, r.timed_out, r.exit_code) for r in results] == [
        ("10-hangs", True, -signal.SIGTERM),
        ("20-next", False, 0),
    ]
    assert results[0].duration_s < 5
    assert is_dead(read_pid(out / "grandchild"))


async def test_async_event_loop_keeps_running_while_a_hook_runs(hooks_dir: Path) -> None:
    write_hook(event_dir(hooks_dir, HookEvent.BOOT), "10-slow", "sleep 0.5")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        [result] = await run_hooks_async(HookEvent.BOOT, hooks_dir=hooks_dir)
    finally:
        task.cancel()

    assert result.ok
    assert ticks >= 5


async def test_cancelling_the_async_run_kills_the_hook_group(hooks_dir: Path, out: Path) -> None:
    write_hook(
        event_dir(hooks_dir, HookEvent.UPDATE),
        "10-long",
        f'echo $$ > "{out}/hook"\nsleep {LONG_SLEEP} &\necho $! > "{out}/grandchild"\nwait',
    )
    task = asyncio.create_task(run_hooks_async(HookEvent.UPDATE, hooks_dir=hooks_dir))
    grandchild_file = out / "grandchild"
    for _ in range(200):
        if grandchild_file.exists() and grandchild_file.read_text().strip():
            break
        await asyncio.sleep(0.02)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert is_dead(read_pid(out / "hook"))
    assert is_dead(read_pid(grandchild_file))
