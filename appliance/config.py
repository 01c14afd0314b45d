"""The one configuration model: `/etc/ai-appliance/config.toml` plus `APPLIANCE_*` overrides.

Imports only `appliance.errors` and `appliance.config_overrides` (the settings changed from
the console, layered over the file: environment > console changes > file > defaults). Every
setting is declared once here with its default and a docstring; environment variables
override the file as `APPLIANCE_SECTION__KEY` (e.g. `APPLIANCE_ENGINE__THREADS=4`), and three
short forms exist for scripts and tests:

- `APPLIANCE_CONFIG`  the config file (default `/etc/ai-appliance/config.toml`, or
                      `$APPLIANCE_HOME/config.toml` when a home is set)
- `APPLIANCE_HOME`    one directory used instead of every system path (state, models,
                      database, admin socket, hooks)
- `APPLIANCE_LISTEN`  `host:port` of the LAN listener (same as `APPLIANCE_API__LISTEN`)

A bad key or value raises `ConfigError` with one line naming the key and the expected form.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.config_overrides import (
    EDITABLE,
    as_flat,
    as_nested,
    layered,
    overrides_path,
    read_overrides,
)
from appliance.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/ai-appliance/config.toml")
SYSTEM_STATE_DIR = Path("/var/lib/ai-appliance")
SYSTEM_ADMIN_SOCKET = Path("/run/ai-appliance/admin.sock")
SYSTEM_HOOKS_DIR = Path("/etc/ai-appliance/hooks.d")
SYSTEM_CACHE_DIR = Path("/var/cache/ai-appliance")


class Section(BaseModel):
    # A misspelt key must be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:8080`) into its parts, or raise ValueError."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected HOST:PORT such as 0.0.0.0:8080, got {value!r}")
    return host.strip("[]"), int(port_text)


class ApiSettings(Section):
    listen: str = "0.0.0.0:8080"
    """`host:port` the LAN API listens on (OpenAI- and Ollama-compatible)."""
    require_api_key: bool = True
    """Refuse LAN requests without a valid API key. Turn off only on a trusted network."""
    public_url: str | None = None
    """URL to show people (e.g. behind a reverse proxy); derived from `listen` when unset."""
    reasoning_format: Literal["deepseek", "ollama", "vllm", "none"] = "deepseek"
    """`<think>` text goes to: deepseek `reasoning_content`, ollama `thinking`, vllm `reasoning`."""
    openapi_docs: bool = False
    """Serve `/docs`, `/redoc` and `/openapi.json` (to holders of an API key); off by default."""

    drain_s: float = Field(default=30.0, ge=0)
    """On SIGTERM, seconds answers in progress may go on (no new connections are taken);
    then each is ended with an error event. A second SIGTERM ends them at once."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value


class PathSettings(Section):
    state_dir: Path | None = None
    """Models and the SQLite database. Default `/var/lib/ai-appliance` (or `$APPLIANCE_HOME`)."""
    admin_socket: Path | None = None
    """Unix socket of the admin API. Default `/run/ai-appliance/admin.sock`."""
    hooks_dir: Path | None = None
    """Lifecycle hooks, one folder per event. Default `/etc/ai-appliance/hooks.d`."""


class EngineSettings(Section):
    context_length: int = Field(default=4096, ge=0)
    """Context window per loaded model in tokens; 0 uses the model's trained length."""
    threads: int = Field(default=0, ge=0)
    """CPU threads for generation; 0 picks the number of physical cores."""
    max_tokens: int = Field(default=2048, ge=1)
    """Answer length cap when a request sets none."""
    load_timeout_s: float = Field(default=300.0, gt=0)
    """How long a model load may take before it is reported failed."""
    slots: int = Field(default=0, ge=0, le=64)
    """Conversations decoded together per model; 0 picks as many as memory allows, up to 16."""
    batch_tokens: int = Field(default=512, ge=16)
    """Most tokens in one decode step (prompt chunks are cut to fit, so no one stalls)."""
    kv_cache_type: Literal["f16", "q8_0"] = "f16"
    """KV cache element type: q8_0 holds about half the memory per slot (a little slower)."""
    speculative_tokens: int = Field(default=8, ge=0, le=32)
    """Tokens guessed ahead by prompt lookup per step (speculative decoding: only tokens the
    model samples are kept); 0 turns it off."""
    draft_model: str = Field(default="auto", min_length=1)
    """Draft model for speculative decoding: `auto` (an installed model with the same
    vocabulary, at most a quarter of the size), `off`, or a model name."""
    stream_interval_ms: int = Field(default=30, ge=0, le=1000)
    """Longest a streamed token may wait to be sent with the next ones: a fast answer leaves
    in groups of a few tokens, which spends less CPU per token on the daemon and the client;
    an answer's first token, and tokens slower than this, go out at once. 0 sends each token
    alone."""
    queue_size: int = Field(default=64, ge=0)
    """Requests that may wait for a free slot per model; beyond it the API answers 429."""
    max_loaded: int = Field(default=1, ge=1)
    """Models held in memory at once; loading another unloads the least recently used."""
    keep_alive_s: float = Field(default=300.0, ge=0)
    """Idle seconds before a model other than the default is unloaded; 0 keeps it forever."""
    hang_timeout_s: float = Field(default=120.0, gt=0)
    """A worker that answers no heartbeat for this long is killed and restarted."""
    worker_oom_score_adj: int = Field(default=500, ge=-1000, le=1000)
    """Workers' `oom_score_adj`: above the daemon's, so out of memory a worker goes first."""


class LimitsSettings(Section):
    """Bounds on what one API request may ask for, checked before anything is allocated.

    Exceeding one answers 400 (413 for the body) with a message naming the field and the limit.
    """

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body in bytes; checked before the API key and before JSON parsing."""
    max_messages: int = Field(default=1024, ge=1)
    """Messages in one chat request (the whole conversation so far)."""
    max_tokens: int = Field(default=32768, ge=1)
    """Largest `max_tokens` / `max_completion_tokens` a request may ask for."""
    max_choices: int = Field(default=8, ge=1, le=64)
    """Largest `n`: every choice is a sequence in the model's batch, shared with everyone."""
    max_stops: int = Field(default=4, ge=0)
    """Stop sequences in one request."""
    max_stop_chars: int = Field(default=256, ge=1)
    """Characters in one stop sequence."""
    max_logit_bias: int = Field(default=1024, ge=0)
    """Entries in `logit_bias`; each token id must also exist in the model's vocabulary."""
    max_top_logprobs: int = Field(default=20, ge=0)
    """Largest `top_logprobs` (chat) and `logprobs` (text completions ask for at most 5)."""
    max_penalty_last_n: int = Field(default=8192, ge=0)
    """Largest `penalty_last_n` (-1, the whole context, is always allowed)."""
    max_schema_bytes: int = Field(default=65536, ge=64)
    """Size of one JSON schema (`response_format`, a tool's `parameters`) or GBNF `grammar`."""
    max_schema_depth: int = Field(default=32, ge=2)
    """Nesting of objects and arrays in a schema, a tool or `chat_template_kwargs`."""
    max_schema_refs: int = Field(default=64, ge=0)
    """`$ref`s in one JSON schema."""
    max_tools: int = Field(default=128, ge=0)
    """Tool definitions in one chat request."""
    max_embedding_inputs: int = Field(default=256, ge=1)
    """Texts in one embeddings request (each is cut to the model's context)."""


class HookSettings(Section):
    timeout_s: float = Field(default=30.0, gt=0)
    """Seconds a hook may run before it is killed."""


class DevicesSettings(Section):
    driver: Literal["auto", "cpu", "nvidia", "ascend"] = "auto"
    """Vendor: `auto` tries each, logging a failing one; a named vendor failing is an error."""
    telemetry_interval_s: float = Field(default=2.0, gt=0)
    """Seconds between live samples of every device (load, memory, temperature, power)."""
    history_length: int = Field(default=150, ge=1)
    """Samples kept per device for sparklines (150 x 2 s = 5 minutes)."""
    tool_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds `npu-smi` / `nvidia-smi` may run before they are killed and reported hung."""
    ascend_home: str = "/usr/local/Ascend"
    """Root of the Ascend driver, firmware and CANN install (version files are read there)."""
    hotplug: bool = True
    """Watch udev for accelerators and USB disks coming and going."""


class MetricsSettings(Section):
    enabled: bool = True
    """Serve Prometheus metrics at `/metrics`."""
    listen: str = ""
    """Separate `host:port` serving `/metrics` without a key (e.g. `127.0.0.1:9464`); empty:
    `/metrics` is on the LAN API and needs an API key."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value


class AuditSettings(Section):
    store_prompts: bool = False
    """Also keep each request's prompt text in the audit log (off: never stored)."""
    retention_days: int = Field(default=90, ge=1)
    """Audit entries older than this are deleted (checked daily)."""


class TlsSettings(Section):
    mode: Literal["off", "self-signed", "files"] = "off"
    """HTTPS on the LAN API: `off`; `self-signed` (a certificate for the box's names made at
    first start, in `<state_dir>/tls/`); `files` (`cert_file` and `key_file`, reread on SIGHUP)."""
    cert_file: Path | None = None
    """PEM certificate (with its chain) for `mode = "files"`."""
    key_file: Path | None = None
    """PEM private key, without a passphrase, for `mode = "files"`."""

    @model_validator(mode="after")
    def _files_given(self) -> TlsSettings:
        if self.mode == "files" and not (self.cert_file and self.key_file):
            raise ValueError('mode "files" needs both tls.cert_file and tls.key_file')
        return self


class DiscoverySettings(Section):
    enabled: bool = True
    """Announce the LAN API over mDNS (`_appliance._tcp` and `_http._tcp`) so `appliance discover`
    and service browsers on the LAN find the box."""
    name: str = ""
    """Name announced on the LAN; empty: `AI appliance on <hostname>`."""


class RuntimeSettings(Section):
    llama_dir: Path | None = None
    """Folder of the llama.cpp runtime builds (`cpu`, `cuda`, `cann`).
    Default: beside the appliance's Python, `<venv>/lib/ai-appliance/llama-runtime`."""
    cpu_variants: list[str] = Field(default_factory=list)
    """CPU variants the self-test considers, best first (e.g. `["zen4", "haswell"]`); empty:
    every variant this CPU's CPUID allows. A variant named here is tried even where CPUID says
    no, and rejected if it fails."""
    cache_dir: Path | None = None
    """Where the self-test keeps its verdict and test model.
    Default `/var/cache/ai-appliance` (or `$APPLIANCE_HOME/cache`)."""
    selftest_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds one CPU variant's self-test may run before it is counted as hung."""


class UpstreamSettings(Section):
    """Forwarding to OpenAI-compatible servers (vLLM, MindIE, llama-server, another appliance).

    The upstreams themselves are added with `appliance upstream add` and kept in
    `<state_dir>/upstreams.json`; these are the settings every upstream shares."""

    health_interval_s: float = Field(default=15.0, gt=0)
    """Seconds between health checks (`GET <url>/models`) of every upstream."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """Seconds to open a connection to an upstream before trying the next one."""
    read_timeout_s: float = Field(default=600.0, gt=0)
    """Seconds an upstream may stay silent mid-answer (a long prompt's first token included)."""


def parse_rpc_peer(value: str) -> tuple[str, int, int]:
    """`HOST:PORT=MEMORY` (MEMORY as `24GiB` or `24576MiB`) → (host, port, MiB), or ValueError."""
    address, sep, memory = value.partition("=")
    host, port = parse_listen(address.strip())
    text = memory.strip().lower().replace(" ", "")
    units = {"gib": 1024, "gb": 1024, "g": 1024, "mib": 1, "mb": 1, "m": 1}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return host, port, int(float(text[: -len(unit)]) * factor)
    raise ValueError(
        f"expected HOST:PORT=MEMORY such as 192.168.50.21:50052=24GiB (the memory the peer's "
        f"rpc-server offers), got {value!r}"
        if sep
        else f"expected HOST:PORT=MEMORY such as 192.168.50.21:50052=24GiB, got {value!r}: "
        "the planner needs each peer's memory"
    )


class RpcSettings(Section):
    """llama.cpp RPC: spread one model's layers over this box and other boxes' devices.

    Needs a llama.cpp runtime built with GGML_RPC. The RPC protocol has no authentication
    and no encryption: use it only on a dedicated network segment (docs/scale-out.md)."""

    peers: list[str] = Field(default_factory=list)
    """Other boxes' `appliance rpc-server`s this box may place layers on, as `HOST:PORT=MEMORY`
    (e.g. `192.168.50.21:50052=24GiB`); empty: models stay on this box."""
    server_listen: str = ""
    """`host:port` `appliance rpc-server` binds to (an address on the RPC segment, never
    0.0.0.0 on an office LAN); empty: the RPC server refuses to start."""
    server_device: str = ""
    """Devices the RPC server offers, comma-separated llama.cpp names (e.g. `CUDA0`); empty:
    all of them."""
    server_threads: int = Field(default=0, ge=0)
    """CPU threads of an RPC server that lends its CPU; 0: llama.cpp's default."""

    @field_validator("peers")
    @classmethod
    def _check_peers(cls, value: list[str]) -> list[str]:
        for peer in value:
            parse_rpc_peer(peer)
        return value

    @field_validator("server_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value


class Config(BaseSettings):
    """Everything the daemon and the CLI can be told."""

    model_config = SettingsConfigDict(
        env_prefix="APPLIANCE_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    home: Path | None = None
    """One directory used instead of every system path (set by `APPLIANCE_HOME`)."""
    default_model: str | None = None
    """Model loaded at start; when unset, the largest installed GGUF model that the fit planner
    says runs on this box's devices."""
    api: ApiSettings = ApiSettings()
    paths: PathSettings = PathSettings()
    engine: EngineSettings = EngineSettings()
    limits: LimitsSettings = LimitsSettings()
    hooks: HookSettings = HookSettings()
    devices: DevicesSettings = DevicesSettings()
    metrics: MetricsSettings = MetricsSettings()
    audit: AuditSettings = AuditSettings()
    tls: TlsSettings = TlsSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    upstream: UpstreamSettings = UpstreamSettings()
    rpc: RpcSettings = RpcSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment must win over the file.
        return (env_settings, init_settings)

    # Resolved paths: an explicit setting wins, then $APPLIANCE_HOME, then the system path.
    @property
    def state_dir(self) -> Path:
        return self.paths.state_dir or self.home or SYSTEM_STATE_DIR

    @property
    def admin_socket(self) -> Path:
        if self.paths.admin_socket:
            return self.paths.admin_socket
        return self.home / "admin.sock" if self.home else SYSTEM_ADMIN_SOCKET

    @property
    def hooks_dir(self) -> Path:
        if self.paths.hooks_dir:
            return self.paths.hooks_dir
        return self.home / "hooks.d" if self.home else SYSTEM_HOOKS_DIR

    @property
    def cache_dir(self) -> Path:
        if self.runtime.cache_dir:
            return self.runtime.cache_dir
        return self.home / "cache" if self.home else SYSTEM_CACHE_DIR

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def database(self) -> Path:
        return self.state_dir / "appliance.db"

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.api.listen)


def default_config_path(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("APPLIANCE_CONFIG"):
        return Path(env["APPLIANCE_CONFIG"])
    if env.get("APPLIANCE_HOME"):
        return Path(env["APPLIANCE_HOME"]) / "config.toml"
    return SYSTEM_CONFIG


def load_config(path: Path | None = None) -> Config:
    """Read the config file (if any) and the environment into a validated `Config`.

    `path` is the file the user named (`--config`); a named file must exist. The default
    file may be absent, in which case every default applies.
    """
    explicit = path is not None or bool(os.environ.get("APPLIANCE_CONFIG"))
    path = path or default_config_path()
    data = _read_toml(path, must_exist=explicit)
    config = _validated(data, path)
    # Where the console's changes live depends on the file (paths.state_dir), so read them after.
    changes = read_overrides(config.state_dir)
    if changes:
        config = _validated(layered(data, changes), path, changes, overrides_path(config.state_dir))
    return config


def _validated(
    data: dict[str, Any],
    path: Path,
    changes: dict[str, Any] | None = None,
    changes_file: Path | None = None,
) -> Config:
    listen_override = os.environ.get("APPLIANCE_LISTEN")
    try:
        config = Config(**data)
        if listen_override:
            config.api = ApiSettings.model_validate(
                {**config.api.model_dump(), "listen": listen_override}
            )
    except ValidationError as exc:
        changed = set(as_flat(changes or {}))
        raise ConfigError(_describe(exc, path, listen_override, changed, changes_file)) from None
    if config.home is not None:
        config.home = config.home.expanduser().absolute()
    return config


def with_changes(
    changes: dict[str, Any], path: Path | None = None
) -> tuple[Config, dict[str, Any]]:
    """Validate console changes (`{"api.listen": "0.0.0.0:8081"}`) against the whole
    configuration; return the configuration they give and the new contents of the overrides
    file (flat keys). A value of None or "" drops the change: the file's value applies again."""
    path = path or default_config_path()
    data = _read_toml(path, must_exist=False)
    state_dir = _validated(data, path).state_dir
    current = as_flat(read_overrides(state_dir))
    for key, value in changes.items():
        if key not in EDITABLE:
            known = {name for name, *_ in settings_reference()}
            what = "is not a setting" if key not in known else "cannot be changed from the console"
            raise ConfigError(
                f"'{key}' {what}; the console can change: {', '.join(EDITABLE)}. "
                f"Others: edit {path} as root, then restart"
            )
        if value is None or value == "":
            current.pop(key, None)
        else:
            current[key] = value
    config = _validated(layered(data, as_nested(current)), path, as_nested(current))
    # Store what pydantic made of each value (`"300"` becomes 300.0), not the raw text.
    dumped = as_flat(config.model_dump(mode="json"))
    return config, {key: dumped[key] for key in current}


def _read_toml(path: Path, *, must_exist: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(
                f"config file {path} does not exist; create it or point --config / "
                "APPLIANCE_CONFIG at an existing file"
            ) from None
        return {}
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by this user") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _describe(
    exc: ValidationError,
    path: Path,
    listen_override: str | None,
    changed: set[str] | None = None,
    changes_file: Path | None = None,
) -> str:
    """Turn pydantic's report into one line per problem, each naming the key and its source."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if changed and key in changed:
            message = error["msg"].removeprefix("Value error, ")
            got = error.get("input")
            shown = "" if isinstance(got, dict) or "got" in message else f", got {got!r}"
            source = (
                f"changed from the console, kept in {changes_file}" if changes_file
                else "not saved"
            )  # fmt: skip
            lines.append(f"invalid value for '{key}' ({source}): {message}{shown}")
            continue
        if error["type"] == "extra_forbidden":
            known = _known_keys(error["loc"][:-1])
            lines.append(f"unknown key '{key}' in {path} (known keys here: {known})")
            continue
        message = error["msg"].removeprefix("Value error, ")
        where = f"in {path}"
        variable = "APPLIANCE_" + key.upper().replace(".", "__")
        if key == "listen" and listen_override:
            key, where = "api.listen", "from APPLIANCE_LISTEN"
        elif variable in os.environ:
            where = f"from {variable}"
        elif any(name.startswith(f"{variable}__") for name in os.environ):
            # A whole section's check (e.g. tls.mode "files" needs both files) may mix sources.
            where = f"in {path} or the {variable}__* variables"
        got = error.get("input")
        shown = "" if isinstance(got, dict) or "got" in message else f", got {got!r}"
        lines.append(f"invalid value for '{key}' {where}: {message}{shown}")
    return "; ".join(lines)


def _known_keys(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Config
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return ", ".join(name for name in model.model_fields if name != "home" or model is not Config)


def settings_reference() -> list[tuple[str, str, str, str]]:
    """Every setting as (key, environment variable, default, meaning), for docs and `--help`."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
                continue
            key = f"{prefix}{name}"
            env = "APPLIANCE_" + key.upper().replace(".", "__")
            if key == "api.listen":
                env += " or APPLIANCE_LISTEN"
            value = field.get_default(call_default_factory=True)
            default = "unset" if value is None else json.dumps(value, default=str)
            # Table cells are one line: fold multi-line docstrings.
            rows.append((key, env, default, " ".join((field.description or "").split())))

    walk(Config, "")
    return rows
