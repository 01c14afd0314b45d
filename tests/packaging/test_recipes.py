"""packaging/: the recipes themselves, without building the big packages (see
test_deb_container.py and test_rpm_package.py for those)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from appliance.cli.config_cmd import example_toml
from appliance.config import Config, settings_reference

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build.sh"
CONFIG = ROOT / "packaging" / "config.toml"


def test_shipped_config_lists_every_setting_and_loads_as_the_defaults() -> None:
    text = CONFIG.read_text()
    assert text == example_toml(), "regenerate: appliance config example > packaging/config.toml"
    for key, *_ in settings_reference():
        if key != "home":
            assert f"#{key.rpartition('.')[2]} = " in text, f"{key} missing from config.toml"
    assert Config(**tomllib.loads(text)) == Config()


def test_build_script_and_maintainer_scripts_pass_shellcheck() -> None:
    assert shutil.which("shellcheck"), "shellcheck is a test dependency (make test-system-deps)"
    scripts = [BUILD, ROOT / "packaging" / "debian" / "ai-appliance.postrm"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_lock_pins_every_runtime_dependency_of_pyproject() -> None:
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "packaging" / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].strip().lower()
        if name != "llama-cpp-python":  # installed as bindings by install-llama.sh
            assert name in pinned, f"{name} is not in packaging/requirements.lock"


needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("dh", "dpkg-parsechangelog", "rpmspec", "rpmlint")),
    reason="debhelper, dpkg-dev, rpm and rpmlint are test dependencies (make test-system-deps)",
)


@needs_tools
@pytest.mark.parametrize("runtime", ["cpu", "cuda", "cann"])
def test_every_recipe_renders_and_lints_cleanly(runtime: str) -> None:
    result = subprocess.run(
        [str(BUILD), "--runtime", runtime, "--recipe-only"], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "renders and lints cleanly" in result.stdout


def test_cuda_package_stops_before_building_when_cublas_is_missing(tmp_path: Path) -> None:
    # This machine has nvcc but not cuBLAS: the recipe must say so at once, not after a venv.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.4'\n")
    (fake / "nvcc").chmod(0o755)
    result = subprocess.run(
        [str(BUILD), "--runtime", "cuda", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{fake}:/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "cuBLAS" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_the_wheel_lists_every_package_of_the_checkout() -> None:
    # setuptools installs only the packages named in pyproject: one left out is missing from
    # the .deb/.rpm (the daemon or the console then dies on an import) while the checkout,
    # where the tests import from, works.
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in settings["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *parts)))
    assert sorted(found - set(settings["packages"])) == []
