"""`appliance doctor`'s checks: one self-test an administrator or support engineer runs.

Each check yields `Finding`s (OK / WARN / FAIL, what was found, the fix). Whatever needs the
daemon goes through the admin API (`AdminClient`), the same path as every other command; with
no daemon, devices and models are read in-process (as `appliance devices` does) and the
daemon-only checks fail with how to start it. May import config, client, records, errors,
firmware_hooks and (lazily) the device manager and model store; never the API or the engine.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from appliance.client import AdminClient
from appliance.config import (
    SYSTEM_STATE_DIR,
    Config,
    default_config_path,
    load_config,
    parse_listen,
)
from appliance.errors import ApplianceError
from appliance.firmware_hooks import list_hooks
from appliance.records import Accelerator, RuntimeReport, VerifyResult

SERVICE = "ai-appliance.service"
SERVICE_USER = "ai-appliance"
ADMIN_GROUP = "appliance-admin"


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    area: str
    level: Level
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "level": self.level.value}


def ok(area: str, message: str) -> Finding:
    return Finding(area, Level.OK, message)


def warn(area: str, message: str, fix: str) -> Finding:
    return Finding(area, Level.WARN, message, fix)


def fail(area: str, message: str, fix: str) -> Finding:
    return Finding(area, Level.FAIL, message, fix)


@dataclass
class Context:
    config: Config
    config_path: Path
    client: AdminClient | None
    """The daemon's admin API, or None when no daemon answers."""
    system: bool
    """A packaged install (system paths, the ai-appliance user), not an APPLIANCE_HOME."""
    facts: dict[str, Any]
    """What the checks read, kept for the support bundle."""


def run_checks(config_path: Path | None) -> tuple[list[Finding], dict[str, Any]]:
    """Every check, in order; returns the findings and the facts they were based on."""
    findings: list[Finding] = []
    path = config_path or default_config_path()
    try:
        config = load_config(config_path)
    except ApplianceError as error:
        findings.append(fail("config", error.message, f"fix {path}, then `appliance config check`"))
        config = Config()
    else:
        where = f"{path}" if path.exists() else f"{path} absent, defaults apply"
        findings.append(ok("config", f"configuration valid ({where})"))
    system = config.home is None and config.state_dir == SYSTEM_STATE_DIR
    client = _daemon(config)
    context = Context(config, path, client, system, {})
    try:
        for check in CHECKS:
            try:
                findings.extend(check(context))
            except ApplianceError as error:  # one broken check must not hide the others
                findings.append(
                    fail(
                        check.__name__.removeprefix("check_"),
                        error.message,
                        "see the daemon's journal",
                    )
                )
    finally:
        if client is not None:
            client.__exit__()
    return findings, context.facts


def _daemon(config: Config) -> AdminClient | None:
    if not config.admin_socket.exists():
        return None
    client = AdminClient(config.admin_socket)
    if client.is_running():
        return client
    client.__exit__()
    return None


def check_directories(ctx: Context) -> Iterator[Finding]:
    config = ctx.config
    fix_tmpfiles = "systemd-tmpfiles --create ai-appliance.conf (as root)"
    for label, path in (("state", config.state_dir), ("models", config.models_dir)):
        if not path.is_dir():
            yield fail("directories", f"{label} folder {path} is missing", fix_tmpfiles)
            continue
        info = path.stat()
        owner = _user(info.st_uid)
        mode = stat.S_IMODE(info.st_mode)
        if ctx.system and owner != SERVICE_USER:
            yield fail(
                "directories",
                f"{path} belongs to {owner}, not {SERVICE_USER}",
                f"chown -R {SERVICE_USER}:{SERVICE_USER} {path}",
            )
        elif mode & 0o007:
            yield warn(
                "directories",
                f"{path} is open to every user (mode {mode:04o})",
                f"chmod o-rwx {path}",
            )
        else:
            yield ok("directories", f"{label} folder {path} ({owner}, {mode:04o})")
    hooks = config.hooks_dir
    if hooks.is_dir():
        mode = stat.S_IMODE(hooks.stat().st_mode)
        if mode & 0o002:
            yield fail(
                "directories",
                f"hooks folder {hooks} is world-writable: anyone could add code the daemon runs",
                f"chmod o-w {hooks}",
            )
        else:
            yield ok("directories", f"hooks folder {hooks} ({mode:04o})")
    else:
        yield warn("directories", f"hooks folder {hooks} is missing (no hooks run)", fix_tmpfiles)
    sock = config.admin_socket
    if sock.exists():
        info = sock.stat()
        mode = stat.S_IMODE(info.st_mode)
        group = _group(info.st_gid)
        if mode & 0o007:
            yield fail(
                "directories",
                f"admin socket {sock} is open to every user ({mode:04o})",
                "restart the daemon; it creates the socket 0660",
            )
        elif ctx.system and group != ADMIN_GROUP:
            yield warn(
                "directories",
                f"admin socket {sock} belongs to group {group}, not "
                f"{ADMIN_GROUP}: its members cannot use `appliance`",
                "systemd-sysusers ai-appliance.conf, then restart the daemon",
            )
        else:
            yield ok("directories", f"admin socket {sock} ({group}, {mode:04o})")


def check_daemon(ctx: Context) -> Iterator[Finding]:
    if shutil.which("systemctl") and ctx.system and Path("/run/systemd/system").is_dir():
        yield from _service_state(ctx)
    if ctx.client is None:
        yield fail(
            "daemon",
            f"no daemon answers on {ctx.config.admin_socket}",
            "systemctl start ai-appliance; journalctl -u ai-appliance says why it "
            "stopped (`appliance serve` without systemd)",
        )
        return
    status = ctx.client.status()
    ctx.facts["status"] = status.model_dump(mode="json")
    yield ok(
        "daemon", f"daemon {status.version} up {status.uptime_s:.0f} s, LAN API {status.api_url}"
    )


def _service_state(ctx: Context) -> Iterator[Finding]:
    props = "ActiveState,SubState,StatusText,WatchdogTimestamp,NRestarts,Result"
    result = subprocess.run(
        ["systemctl", "show", SERVICE, f"--property={props}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    ctx.facts["service"] = values
    state = f"{values.get('ActiveState', '?')} ({values.get('SubState', '?')})"
    text = values.get("StatusText", "")
    if values.get("ActiveState") != "active":
        yield fail(
            "service",
            f"{SERVICE} is {state}: {text or values.get('Result', '')}",
            "systemctl restart ai-appliance; journalctl -u ai-appliance -b",
        )
    elif text.startswith(("degraded", "engine heartbeat stale")):
        yield warn("service", f"{SERVICE} is {state}: {text}", "see the model lines below")
    else:
        watchdog = values.get("WatchdogTimestamp") or "never"
        yield ok("service", f"{SERVICE} is {state}: {text}; watchdog fed {watchdog}")


def check_devices(ctx: Context) -> Iterator[Finding]:
    devices, runtime = _devices_and_runtime(ctx)
    ctx.facts["devices"] = [device.model_dump(mode="json") for device in devices]
    ctx.facts["runtime"] = runtime.model_dump(mode="json")
    for device in devices:
        if device.usable:
            yield ok("devices", f"{device.id} {device.name}: {device.reason}")
        else:
            yield warn(
                "devices",
                f"{device.id} {device.name} is not usable: {device.reason}",
                "the reason says what is missing (driver, firmware, toolkit)",
            )
    yield from _runtime_findings(runtime)


def _devices_and_runtime(ctx: Context) -> tuple[list[Accelerator], RuntimeReport]:
    if ctx.client is not None:
        return ctx.client.devices(), ctx.client.runtimes()
    from appliance.devices import DeviceManager  # discovery only when no daemon holds it

    manager = DeviceManager.from_config(ctx.config)
    manager.refresh()
    return manager.devices(), manager.runtimes()


def _runtime_findings(runtime: RuntimeReport) -> Iterator[Finding]:
    reinstall = "reinstall the package (apt install --reinstall ai-appliance / dnf reinstall)"
    if runtime.llama_cpp_runtime is None:
        yield fail("runtime", "no llama.cpp runtime build is installed", reinstall)
    else:
        yield ok(
            "runtime",
            f"llama.cpp {runtime.llama_cpp_version or '?'} "
            f"{runtime.llama_cpp_runtime} build in {runtime.llama_cpp_dir}",
        )
    choice = runtime.cpu_variant
    if choice is None or not choice.variant:
        why = choice.reason if choice else "the self-test did not run"
        yield fail(
            "runtime",
            f"no CPU variant passed the self-test: {why}",
            "GGUF models cannot load; send `appliance doctor --bundle` to support",
        )
    else:
        rejected = [v.name for v in choice.verdicts if v.status.value == "rejected"]
        extra = f"; rejected: {', '.join(rejected)}" if rejected else ""
        yield ok("runtime", f"CPU variant {choice.variant} chosen by the self-test{extra}")
    if runtime.needed_runtime:
        yield warn(
            "runtime",
            runtime.needed_runtime,
            "install the runtime package it names (ai-appliance-runtime-cuda or "
            "ai-appliance-runtime-cann)",
        )
    for note in runtime.notes:
        yield warn("runtime", note, "see docs/runtime.md")


def check_hooks(ctx: Context) -> Iterator[Finding]:
    entries = list_hooks(ctx.config.hooks_dir)
    ctx.facts["hooks"] = [
        {"event": e.event, "name": e.name, "runs": e.runs, "problem": e.problem} for e in entries
    ]
    refused = [e for e in entries if not e.runs]
    for entry in refused:
        yield warn(
            "hooks",
            f"{entry.event}.d/{entry.name} will not run: {entry.problem}",
            f"fix or remove {entry.path}",
        )
    running = len(entries) - len(refused)
    yield ok("hooks", f"{running} hook(s) will run in {ctx.config.hooks_dir}")


def check_models(ctx: Context) -> Iterator[Finding]:
    results: list[VerifyResult]
    if ctx.client is not None:
        results = ctx.client.verify_models()
    else:
        from appliance.store.models import ModelStore

        results = ModelStore(ctx.config.state_dir).verify(None)
    ctx.facts["models"] = [result.model_dump(mode="json") for result in results]
    if not results:
        yield warn(
            "models",
            "no model is installed",
            "appliance models import FILE (or a USB bundle: appliance models media)",
        )
    for result in results:
        if result.ok:
            yield ok("models", f"{result.name}: {result.detail}")
        else:
            yield fail(
                "models",
                f"{result.name}: {result.detail}",
                f"re-import it, or `appliance models rm {result.name}`",
            )


def check_golden_prompt(ctx: Context) -> Iterator[Finding]:
    if ctx.client is None:
        yield fail(
            "answer",
            "cannot ask the golden prompt: the daemon is not running",
            "start the daemon (see above)",
        )
        return
    if not ctx.client.models():
        yield warn("answer", "no model to ask", "import a model first")
        return
    answer = ctx.client.golden_prompt()
    ctx.facts["golden_prompt"] = answer.model_dump(mode="json")
    shown = " ".join(answer.answer.split())[:80]
    if answer.sane:
        yield ok(
            "answer",
            f"{answer.model} answered {shown!r} ({answer.completion_tokens} "
            f"tokens, {answer.seconds:.1f} s)",
        )
    else:
        yield fail(
            "answer",
            f"{answer.model} answered {shown!r}: {answer.problem}",
            "appliance models verify; re-import the model or try another runtime",
        )


def check_ports(ctx: Context) -> Iterator[Finding]:
    status = ctx.facts.get("status")
    # The running daemon's listener is the truth (the environment may differ from this shell's).
    host, port = parse_listen(status["listen"]) if status else ctx.config.listen_address
    targets = ["127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host]
    if status and host in ("0.0.0.0", "::", ""):
        lan = httpx.URL(status["api_url"]).host
        if lan and lan not in targets:
            targets.append(lan)
    for target in targets:
        shown = f"[{target}]" if ":" in target else target
        url = f"http://{shown}:{port}/health"
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError as error:
            yield fail(
                "ports",
                f"{url} does not answer: {error}",
                f"is the daemon running and {port}/tcp open in the firewall "
                "(firewall-cmd --add-port / ufw allow)?",
            )
            continue
        if response.status_code == 200:
            yield ok("ports", f"{url} answers")
        else:
            yield fail(
                "ports",
                f"{url} answered HTTP {response.status_code}",
                "another program holds the port? change api.listen",
            )


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def hostname() -> str:
    return socket.gethostname()


CHECKS: list[Callable[[Context], Iterator[Finding]]] = [
    check_directories,
    check_daemon,
    check_devices,
    check_hooks,
    check_models,
    check_golden_prompt,
    check_ports,
]


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.level == Level.FAIL for f in findings) else 0


def environment_summary() -> dict[str, str]:
    """Versions for the bundle (no secrets: no environment variables beyond APPLIANCE_*)."""
    info = {"hostname": hostname(), "uname": " ".join(os.uname())}
    with contextlib.suppress(OSError):
        info["os_release"] = Path("/etc/os-release").read_text()
    info["appliance_env"] = "\n".join(
        f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("APPLIANCE_")
    )
    return info
