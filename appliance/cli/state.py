"""The object every CLI command receives: the config, loaded on first use."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.config import Config, load_config


class CliState:
    """Lazily loaded config shared by subcommands (so `--help` works with a broken config)."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_state = click.make_pass_decorator(CliState)
