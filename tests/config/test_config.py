"""Config: the file, the environment overrides, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import SYSTEM_STATE_DIR, load_config
from appliance.errors import ConfigError
from helpers.daemon import run_cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APPLIANCE_CONFIG", "APPLIANCE_HOME", "APPLIANCE_LISTEN"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_apply_without_a_file(tmp_path: Path) -> None:
    config = load_config(None)
    assert config.api.listen == "0.0.0.0:8080"
    assert config.api.require_api_key is True
    assert config.state_dir == SYSTEM_STATE_DIR


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_model = "smollm2"\n[engine]\nthreads = 3\n')
    config = load_config(path)
    assert config.default_model == "smollm2"
    assert config.engine.threads == 3


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[engine]\nthreads = 3\ncontext_length = 1024\n")
    monkeypatch.setenv("APPLIANCE_ENGINE__THREADS", "7")
    monkeypatch.setenv("APPLIANCE_LISTEN", "127.0.0.1:9999")
    config = load_config(path)
    assert config.engine.threads == 7
    assert config.engine.context_length == 1024, "keys the environment does not set stay"
    assert config.listen_address == ("127.0.0.1", 9999)


def test_home_replaces_every_system_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path))
    config = load_config(None)
    assert config.state_dir == tmp_path
    assert config.database == tmp_path / "appliance.db"
    assert config.admin_socket == tmp_path / "admin.sock"
    assert config.hooks_dir == tmp_path / "hooks.d"


def test_home_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path))
    write(tmp_path, "[api]\nrequire_api_key = false\n")
    assert load_config(None).api.require_api_key is False


def test_unknown_key_names_the_key_and_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine]\nthread = 4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.message
    assert "unknown key 'engine.thread'" in message
    assert "threads" in message
    assert str(path) in message


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'enigne'"):
        load_config(write(tmp_path, "[enigne]\nthreads = 4\n"))


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[api]\nlisten = "8080"\n', "api.listen", "HOST:PORT"),
        ('[api]\nlisten = "0.0.0.0:99999"\n', "api.listen", "HOST:PORT"),
        ("[engine]\nthreads = -1\n", "engine.threads", "greater than or equal to 0"),
        ('[engine]\nthreads = "many"\n', "engine.threads", "integer"),
        ('[api]\nrequire_api_key = "maybe"\n', "api.require_api_key", "boolean"),
    ],
)
def test_bad_value_names_the_key_and_the_expected_form(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert f"'{key}'" in caught.value.message
    assert expected in caught.value.message


def test_bad_listen_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPLIANCE_LISTEN", "localhost")
    with pytest.raises(ConfigError, match="APPLIANCE_LISTEN"):
        load_config(None)


def test_invalid_toml_is_reported_with_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_config(write(tmp_path, "[engine]\nthreads = = 4\n"))


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_cli_reports_a_bad_config_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    write(tmp_path, "[engine]\nthread = 4\n")
    result = run_cli(tmp_path, "config", "check", check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: unknown key 'engine.thread'")
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_bad_config_before_binding_anything(tmp_path: Path) -> None:
    write(tmp_path, '[api]\nlisten = "nowhere"\n')
    result = run_cli(tmp_path, "serve", check=False)
    assert result.returncode == 2
    assert "api.listen" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "admin.sock").exists()


def test_bad_value_from_the_environment_names_the_variable_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_ENGINE__THREADS", "many")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[engine]\nthreads = 2\n"))
    assert "'engine.threads' from APPLIANCE_ENGINE__THREADS" in caught.value.message
