"""`appliance config ...` and the settings table in the administrator's guide."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.cli.config_cmd import DOCS_BEGIN, DOCS_END, reference_markdown
from helpers.daemon import run_cli

GUIDE = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_guide_lists_every_setting_as_the_code_declares_it() -> None:
    text = GUIDE.read_text()
    generated = text[text.index(DOCS_BEGIN) : text.index(DOCS_END) + len(DOCS_END)]
    assert generated == reference_markdown(), (
        "docs/configuration.md is stale: regenerate the table with `appliance config reference`"
    )


def test_check_prints_the_paths_in_effect_for_a_home(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "config", "check")
    assert f"state dir:     {tmp_path}" in result.stdout
    assert f"admin socket:  {tmp_path / 'admin.sock'}" in result.stdout
    assert result.stdout.strip().endswith("ok")


def test_settings_can_be_changed_before_the_first_start_and_restart_says_nothing_runs(
    tmp_path: Path,
) -> None:
    # No daemon: the same admin route checks and saves, in the CLI's own process.
    saved = run_cli(tmp_path, "config", "set", "discovery.name", "Front desk")
    assert f"saved to {tmp_path / 'settings.toml'}" in saved.stdout
    shown = json.loads(run_cli(tmp_path, "config", "show").stdout)
    assert shown["discovery"]["name"] == "Front desk"
    restart = run_cli(tmp_path, "restart", check=False)
    assert restart.returncode == 3
    assert "the appliance daemon is not running" in restart.stderr
    assert "nothing to restart" in restart.stderr
