"""The CUDA runtime package (ai-appliance-runtime-cuda) beside the core package.

No GPU reaches the build machines, so what is checked is everything short of a kernel running on
one: the package installs next to the core .deb in a booted Debian 12 root, carries the CUDA
runtime and cuBLAS it was linked with (nothing but the NVIDIA driver left to the box), points the
driver's kernel cache at the state disk, and on a box without an NVIDIA GPU the service stays up,
says that models run on the CPU and answers a chat; removing the package restarts the service on
the core package's CPU build. The .rpm is checked by its contents and scriptlets.

Built by `make package-cuda` (~30 min of compiling on 2 cores, once; cached afterwards);
`make test-packages` packages it when that build is cached and says so when it is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import __version__
from appliance.store.embedded import embedded_model_path
from helpers.container import Container, boot, installed_root, why_not_bootable
from helpers.rpm import query_rpm

pytestmark = pytest.mark.packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("AI_APPLIANCE_PACKAGES", ROOT / "dist"))
CORE = PACKAGES / f"ai-appliance_{__version__}_amd64.deb"
CUDA = PACKAGES / f"ai-appliance-runtime-cuda_{__version__}_amd64.deb"
CUDA_RPM = PACKAGES / f"ai-appliance-runtime-cuda-{__version__}-1.x86_64.rpm"
RUNTIME = "/usr/lib/ai-appliance/venv/lib/ai-appliance/llama-runtime/cuda"
REPORT = Path(os.environ.get("AI_APPLIANCE_E2E_REPORT", ROOT / "dist" / "e2e-report"))


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    reason = why_not_bootable({CORE: "make package", CUDA: "make package-cuda"})
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("nspawn-cuda")
    root = work / "root"
    installed_root(root, [CORE, CUDA], embedded_model_path())
    handle = boot(root, "aiappliance-cuda", work / "console.log")
    try:
        handle.wait_booted()
        yield handle
    finally:
        handle.stop()


def status(container: Container) -> str:
    return container.run("appliance", "status").stdout


def test_the_cuda_build_carries_everything_but_the_driver(container: Container) -> None:
    listing = container.run("ls", RUNTIME).stdout.split()
    for library in ("libggml-cuda.so", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"):
        assert library in listing, listing
    assert any(name.startswith("libggml-cpu-") for name in listing), "CPU variants ride along"
    linked = container.run("ldd", f"{RUNTIME}/libggml-cuda.so").stdout
    assert "not found" not in linked, linked
    assert f"{RUNTIME}/libcublas.so.13" in linked, "cuBLAS comes from the package, not the system"


def test_the_service_points_the_kernel_cache_at_its_cache_disk(container: Container) -> None:
    environment = container.run(
        "systemctl", "show", "ai-appliance", "--property=Environment"
    ).stdout
    assert "CUDA_CACHE_PATH=/var/cache/ai-appliance/cuda-jit" in environment, environment
    assert "CUDA_CACHE_MAXSIZE=4294967296" in environment


def test_without_a_gpu_the_service_runs_models_on_the_cpu_and_says_so(
    container: Container,
) -> None:
    container.run("appliance", "models", "import", "/srv/smollm2.gguf", "--name", "smollm2")
    container.run("systemctl", "restart", "ai-appliance")
    state = container.run(
        "systemctl", "show", "ai-appliance", "--property=ActiveState,StatusText"
    ).stdout
    assert "ActiveState=active" in state and "serving smollm2 on cpu0" in state, state
    report = status(container)
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "cuda-status.txt").write_text(report)
    doctor = container.run("appliance", "doctor", check=False)
    (REPORT / "cuda-doctor.txt").write_text(doctor.stdout + doctor.stderr)
    assert doctor.returncode == 0, doctor.stdout
    assert "llama.cpp runtime: cuda build" in report, report
    assert "no usable NVIDIA GPU: models run on the CPU" in " ".join(report.split()), report
    key = container.run("cat", "/var/lib/ai-appliance/first-admin-key").stdout.strip()
    script = (
        "import json, sys, urllib.request\n"
        "body = json.dumps({'model': 'smollm2', 'max_tokens': 8,"
        " 'messages': [{'role': 'user', 'content': 'Say hello.'}]}).encode()\n"
        "req = urllib.request.Request('http://127.0.0.1:8080/v1/chat/completions', body,"
        " {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + sys.argv[1]})\n"
        "print(json.load(urllib.request.urlopen(req, timeout=120))"
        "['choices'][0]['message']['content'])\n"
    )
    answer = container.run("/usr/lib/ai-appliance/venv/bin/python", "-c", script, key).stdout
    assert answer.strip()


def test_removing_the_runtime_package_restarts_the_service_on_the_cpu_build(
    container: Container,
) -> None:
    before = container.run(
        "systemctl", "show", "ai-appliance", "--property=ExecMainPID"
    ).stdout.strip()
    container.run("dpkg", "-r", "ai-appliance-runtime-cuda")
    after = container.run(
        "systemctl", "show", "ai-appliance", "--property=ExecMainPID,ActiveState"
    ).stdout
    assert "ActiveState=active" in after and before not in after.split(), (before, after)
    assert "llama.cpp runtime: cpu build" in status(container)
    assert container.run("test", "-e", RUNTIME, check=False).returncode != 0


def rpm_query(*args: str) -> str:
    return query_rpm(CUDA_RPM, "make package-cuda", *args)


def test_the_cuda_rpm_adds_its_build_and_drop_in_to_the_core_package() -> None:
    files = set(rpm_query("--list").split())
    for path in (
        f"{RUNTIME}/libggml-cuda.so",
        f"{RUNTIME}/libcublas.so.13",
        "/usr/lib/systemd/system/ai-appliance.service.d/10-cuda.conf",
    ):
        assert path in files, path
    assert not any("/llama-runtime/cpu/" in f for f in files), "the core package owns cpu/"
    assert f"ai-appliance = {__version__}-1" in rpm_query("--requires")
    scripts = rpm_query("--scripts")
    assert scripts.count("try-restart ai-appliance.service") == 2, scripts
