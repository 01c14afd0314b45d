"""Settings changed from the console: validated against the whole configuration, saved
atomically in the state folder, layered over the file, and the environment still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config, with_changes
from appliance.config_overrides import overrides_path, write_overrides
from appliance.errors import ConfigError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("APPLIANCE_CONFIG", "APPLIANCE_LISTEN", "APPLIANCE_ENGINE__KEEP_ALIVE_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text("[engine]\nkeep_alive_s = 120\ncontext_length = 2048\n")
    return tmp_path


def save(changes: dict[str, object]) -> None:
    config, flat = with_changes(changes)
    write_overrides(config.state_dir, flat)


def test_a_saved_change_wins_over_the_file_and_unset_gives_the_file_back(home: Path) -> None:
    save({"engine.keep_alive_s": "60"})
    config = load_config()
    assert config.engine.keep_alive_s == 60.0
    assert config.engine.context_length == 2048  # the file's other values still apply
    assert "keep_alive_s = 60.0" in overrides_path(home).read_text()  # typed, not the text
    save({"engine.keep_alive_s": None})
    assert load_config().engine.keep_alive_s == 120.0


def test_the_environment_still_wins_over_a_saved_change(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save({"engine.keep_alive_s": 60})
    monkeypatch.setenv("APPLIANCE_ENGINE__KEEP_ALIVE_S", "7")
    assert load_config().engine.keep_alive_s == 7.0


def test_a_wrong_value_names_the_key_and_saves_nothing(home: Path) -> None:
    save({"discovery.name": "Front desk"})
    before = overrides_path(home).read_text()
    with pytest.raises(ConfigError) as error:
        save({"discovery.name": "Lab", "engine.keep_alive_s": "-5"})
    assert error.value.message.startswith("invalid value for 'engine.keep_alive_s' (not saved)")
    assert "greater than or equal to 0" in error.value.message
    assert overrides_path(home).read_text() == before


def test_settings_outside_the_console_list_are_refused_with_the_way_to_change_them(
    home: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"'paths\.state_dir' cannot be changed from the console"):
        save({"paths.state_dir": "/elsewhere"})
    with pytest.raises(ConfigError, match=r"'engine\.keep_alive' is not a setting.*as root"):
        save({"engine.keep_alive": 5})
    assert not overrides_path(home).exists()


def test_a_broken_settings_file_is_named_with_how_to_recover(home: Path) -> None:
    overrides_path(home).write_text("[engine\nkeep_alive_s = ")
    with pytest.raises(ConfigError) as error:
        load_config()
    assert str(overrides_path(home)) in error.value.message
    assert "fix or delete it" in error.value.message
