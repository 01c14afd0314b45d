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
    scripts = [
        BUILD,
        *sorted((ROOT / "packaging" / "runtime").glob("*.sh")),
        *sorted((ROOT / "packaging" / "debian").glob("*.post*")),
    ]
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


def test_cuda_build_without_cublas_anywhere_stops_before_downloading_or_compiling(
    tmp_path: Path,
) -> None:
    # A toolkit with nvcc but no cuBLAS, and no package index to fetch NVIDIA's wheel from (an
    # offline build box without the wheel in PIP_FIND_LINKS): the build must say what is
    # missing and how to get it, at once.
    toolkit = tmp_path / "cuda"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "lib").mkdir()
    nvcc = toolkit / "bin" / "nvcc"
    nvcc.write_text(
        "#!/bin/sh\n"
        f"case \"$*\" in *--dryrun*) echo '#$ _HERE_={toolkit}/bin' >&2 ;;\n"
        "  *) echo 'Cuda compilation tools, release 13.0, V13.0.88' ;; esac\n"
    )
    nvcc.chmod(0o755)
    empty = tmp_path / "wheels"
    empty.mkdir()
    result = subprocess.run(
        [str(ROOT / "packaging/runtime/build-llama-runtime.sh"), "--runtime", "cuda",
         "--version", "0.3.36", "--dest", str(tmp_path / "out"), "--cache", str(tmp_path / "c")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{toolkit / 'bin'}:/usr/bin:/bin", "PIP_NO_INDEX": "1",
             "PIP_FIND_LINKS": str(empty)},
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cuBLAS for CUDA 13.0 is neither installed nor downloadable" in result.stderr
    assert "nvidia-cublas==13.0.*" in result.stderr
    assert "fetching the llama-cpp-python" not in result.stdout
    assert not (tmp_path / "out").exists()


def test_cuda_package_without_nvcc_names_the_toolkit_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BUILD), "--runtime", "cuda", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": "/usr/bin:/bin", "CUDA_HOME": str(tmp_path / "no-cuda")},
    )  # fmt: skip
    assert result.returncode != 0
    assert "'nvcc' is missing; install NVIDIA's CUDA toolkit" in result.stderr


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
