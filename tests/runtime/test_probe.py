"""appliance/runtime: the CPU variant self-test picks a variant that really runs here, rejects
one that cannot with a reason a person understands, and is redone only when the machine or the
build changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.records import VariantStatus
from appliance.runtime import cpu_choice, installed_build
from appliance.runtime.builds import find_builds
from appliance.runtime.probe import _compare, choose_cpu_variant, machine_key
from helpers.runtime import runtime_report, runtime_with_a_variant_this_cpu_cannot_run


def test_the_chosen_variant_passed_and_was_the_fastest_within_the_margin() -> None:
    choice = runtime_report().cpu_variant
    assert choice is not None and choice.variant, choice
    by_name = {v.name: v for v in choice.verdicts}
    chosen = by_name[choice.variant]
    assert chosen.status == VariantStatus.CHOSEN
    passed = [v for v in choice.verdicts if v.status in ("chosen", "passed")]

    def per_token(v):  # type: ignore[no-untyped-def]
        return 1 / v.decode_tok_s + 1 / v.prompt_tok_s

    assert per_token(chosen) <= min(per_token(v) for v in passed) * 1.05 + 1e-12
    assert f"using {choice.variant}" in choice.reason
    assert Path(choice.path).name == f"libggml-cpu-{choice.variant}.so"


def test_every_variant_cpuid_allows_was_tried_and_each_rejection_says_why() -> None:
    choice = runtime_report().cpu_variant
    assert choice is not None
    for verdict in choice.verdicts:
        if verdict.score > 0:
            assert verdict.status != VariantStatus.NOT_TRIED, verdict
        if verdict.status == VariantStatus.REJECTED:
            assert verdict.reason.startswith(f"{verdict.name}: ")
            assert verdict.name in choice.reason  # the summary names what was rejected


def test_a_variant_this_cpu_cannot_run_is_rejected_and_the_next_best_chosen(
    tmp_path: Path,
) -> None:
    root, lacking = runtime_with_a_variant_this_cpu_cannot_run(tmp_path / "runtime")
    [build] = find_builds(root)

    choice = choose_cpu_variant(build, tmp_path / "cache", candidates=[lacking, "x64"], threads=1)

    by_name = {v.name: v for v in choice.verdicts}
    assert by_name[lacking].status == VariantStatus.REJECTED
    assert by_name[lacking].reason.startswith(f"{lacking}: ")
    assert any(word in by_name[lacking].reason for word in ("illegal instruction", "crashed"))
    assert choice.variant == "x64"
    assert f"rejected: {lacking}" in choice.reason


def test_the_verdict_is_cached_and_redone_when_the_build_changes(tmp_path: Path) -> None:
    root, _ = runtime_with_a_variant_this_cpu_cannot_run(tmp_path / "runtime")
    [build] = find_builds(root)
    cache = tmp_path / "cache"
    first = choose_cpu_variant(build, cache, candidates=["x64"], threads=1)
    again = choose_cpu_variant(build, cache, candidates=["x64"], threads=1)
    assert again.tested_at == first.tested_at  # from the cache: no second self-test

    info = json.loads((root / "cpu" / "build-info.json").read_text())
    info["built"] = "a rebuild"
    (root / "cpu" / "build-info.json").write_text(json.dumps(info))
    [rebuilt] = find_builds(root)
    assert machine_key(rebuilt, ["x64"]) != machine_key(build, ["x64"])
    redone = choose_cpu_variant(rebuilt, cache, candidates=["x64"], threads=1)
    assert redone.tested_at > first.tested_at


def test_naming_a_variant_the_build_lacks_is_a_clear_verdict(tmp_path: Path) -> None:
    build = installed_build(Config())
    assert build is not None
    choice = choose_cpu_variant(build, tmp_path, candidates=["pentium4"])
    assert choice.variant == ""
    assert "runtime.cpu_variants names pentium4, which this build lacks" in choice.reason


def test_logits_that_are_noise_count_as_wrong_numbers() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    reference = rng.normal(0, 2, (64, 259)).astype(np.float32)
    rounding = reference + rng.normal(0, 0.01, reference.shape).astype(np.float32)
    assert _compare(reference, rounding) is None
    noise = rng.normal(0, 2, reference.shape).astype(np.float32)
    assert "computed wrong numbers" in (_compare(reference, noise) or "")
    broken = reference.copy()
    broken[3, 7] = np.nan
    assert "non-finite" in (_compare(reference, broken) or "")


def test_the_installed_runtime_is_portable_not_a_native_build() -> None:
    """What `make setup`/`make run` installs carries every CPU variant and no -march=native."""
    build = installed_build(Config())
    assert build is not None, "make setup installs the runtime into the venv"
    flags = build.info["flags"]
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_BACKEND_DL=ON" in flags  # type: ignore[operator]
    assert "-DGGML_CPU_ALL_VARIANTS=ON" in flags  # type: ignore[operator]
    assert {"x64", "haswell", "skylakex", "zen4", "sapphirerapids"} <= set(build.cpu_variants) or {
        "armv8.0_1",
        "armv8.2_2",
    } <= set(build.cpu_variants)
    # The bindings carry no native code of their own: nothing pip could have compiled natively.
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.origin is not None
    package_libs = list((Path(spec.origin).parent / "lib").glob("*.so*"))
    assert package_libs == []


def test_the_probe_report_names_the_build_and_the_variant() -> None:
    report = runtime_report()
    assert report.llama_cpp_runtime == "cpu"
    assert report.cpu_variant is not None
    assert report.llama_cpp_backends == ["CPU"]
    assert cpu_choice(Config(), installed_build(Config())).variant == report.cpu_variant.variant  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_RUNTIME__CPU_VARIANTS", raising=False)


def test_a_self_test_stopped_at_shutdown_ends_at_once_and_keeps_no_verdict(
    tmp_path: Path,
) -> None:
    # In a child process: aborting is for good in the process that does it (daemon shutdown).
    code = f"""
import threading, time
from pathlib import Path
from appliance.config import Config
from appliance.runtime import installed_build
from appliance.runtime.probe import SelfTestAborted, abort_self_test, choose_cpu_variant
threading.Timer(1.0, abort_self_test).start()
started = time.monotonic()
try:
    choose_cpu_variant(installed_build(Config()), Path({str(tmp_path)!r}), threads=1)
except SelfTestAborted:
    print("aborted after", round(time.monotonic() - started, 1))
"""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.stdout.startswith("aborted after"), result.stdout + result.stderr
    assert float(result.stdout.split()[-1]) < 30  # not the whole self-test
    assert not list(tmp_path.glob("cpu-variant-*.json"))  # nothing inconclusive is kept
