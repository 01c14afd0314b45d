"""Settings changed at run time (console, `appliance config set`): `<state_dir>/settings.toml`.

The config file in /etc belongs to root and the package (the daemon may not write it); what an
administrator changes through the admin API is kept apart, in the daemon's state folder, and
layered over the file when the configuration is read (the environment still wins over both).
Only the settings in `EDITABLE` can be changed this way: paths, for one, cannot, since the
state folder is where this file lives.

Imports only `appliance.errors`, `appliance.atomic_file` and the TOML libraries;
`appliance.config` does the validation.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from appliance.atomic_file import write_atomically
from appliance.errors import ConfigError

OVERRIDES_FILE = "settings.toml"

EDITABLE: dict[str, str] = {
    "api.listen": "address and port of the LAN API",
    "api.require_api_key": "refuse LAN requests without an API key",
    "api.public_url": "URL shown to people (behind a reverse proxy)",
    "tls.mode": "HTTPS on the LAN API: off, self-signed or files",
    "engine.keep_alive_s": "idle seconds before a model other than the default is unloaded",
    "engine.slots": "conversations decoded together per model (0: as memory allows)",
    "engine.context_length": "context window per loaded model in tokens",
    "default_model": "model loaded at start (empty: the best-fitting installed one)",
    "discovery.enabled": "announce the LAN API over mDNS",
    "discovery.name": "name announced on the LAN",
}
"""Settings the console may change, with one line each for its form."""


def overrides_path(state_dir: Path) -> Path:
    return state_dir / OVERRIDES_FILE


def read_overrides(state_dir: Path) -> dict[str, Any]:
    path = overrides_path(state_dir)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except PermissionError:
        raise ConfigError(f"{path} (settings changed from the console) is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} (settings changed from the console) is not valid TOML: {exc}; fix or "
            "delete it (the config file's values then apply again)"
        ) from None


def as_nested(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"api.listen": x}` → `{"api": {"listen": x}}`."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, name = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return nested


def as_flat(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(as_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def layered(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The config file's data with the overrides on top, section by section."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = layered(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_overrides(state_dir: Path, flat: dict[str, Any]) -> Path:
    """Replace the overrides file atomically (a crash leaves the old one or the new one)."""
    path = overrides_path(state_dir)
    text = (
        "# Settings changed from the console or `appliance config set`; they win over\n"
        "# the config file. Delete a line (or the file) to go back to the file's value.\n"
        + tomli_w.dumps(as_nested({k: v for k, v in flat.items() if v is not None}))
    )
    write_atomically(path, text, what="save the settings to")
    return path
