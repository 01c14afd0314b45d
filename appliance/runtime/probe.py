"""The CPU variant self-test: which `libggml-cpu-<variant>.so` really runs here, and fastest.

May import records, runtime.builds and the standard library (numpy for comparing logits). Each
variant runs in its own child process (`appliance.runtime.selftest`): a variant whose code this
CPU, kernel or hypervisor cannot run dies there (SIGILL, SIGSEGV, abort), not here. Each survivor's
logits are compared with the plain reference variant's (x64), and the survivors are timed; the
fastest one is chosen (contenders timed twice), the higher-scored winning ties within
`TIE_MARGIN`. The verdict is cached
under a key made of the CPU model, its flags, the kernel and the runtime build, so it is redone
when any of them changes and costs nothing at the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from appliance.records import CpuRuntimeChoice, CpuVariantVerdict, VariantStatus
from appliance.runtime.builds import REFERENCE_VARIANT, X86_FEATURES, RuntimeBuild

log = logging.getLogger("appliance.runtime")

VERDICT_VERSION = 2
TIE_MARGIN = 0.05
"""Survivors within 5% of the fastest count as equally fast: the higher ggml score wins (timing
on a shared VM wobbles by a few percent; the richer instruction set is the safer bet then)."""
COSINE_MIN = 0.995
"""Logits of a correct variant point the same way as the reference's. Rounding differs between
kernels: on an AMX Xeon (2026-12-01) every passing variant had cosine >= 0.9997 with x64 and
differed by at most 6.7% of the logits' range; a broken kernel computes noise (cosine near 0)."""
RELATIVE_ERROR_MAX = 0.25
"""…and differ from them by at most a quarter of the reference's largest logit."""


def machine_key(build: RuntimeBuild, candidates: Sequence[str]) -> str:
    from appliance.runtime.selftest_model import MODEL_VERSION

    cpu_model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and not cpu_model:
                cpu_model = value.strip()
            elif name.strip() in ("flags", "Features") and not flags:
                flags = value.strip()
    except OSError:
        pass
    parts = [
        f"v{VERDICT_VERSION}.{MODEL_VERSION}", cpu_model, flags, platform.release(),
        platform.machine(), json.dumps(build.info, sort_keys=True), str(build.path),
        ",".join(candidates),
    ]  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def choose_cpu_variant(
    build: RuntimeBuild,
    cache_dir: Path,
    *,
    candidates: Sequence[str] = (),
    threads: int = 0,
    timeout_s: float = 120.0,
) -> CpuRuntimeChoice:
    """The verdict for `build` on this machine, from the cache or from a fresh self-test.

    `candidates` names the variants to consider, best first, tried even where CPUID says the
    CPU lacks them (to prove the self-test catches it); empty: every variant CPUID allows.
    """
    key = machine_key(build, candidates)
    cache_file = cache_dir / f"cpu-variant-{build.kind}.json"
    cached = _read_cached(cache_file, key)
    if cached is not None:
        return cached
    started = time.monotonic()
    choice = _self_test(build, cache_dir, list(candidates), threads or _physical_cores(), timeout_s)
    choice.key, choice.tested_at = key, time.time()
    log.info("CPU variant self-test (%.1f s): %s", time.monotonic() - started, choice.reason)
    if not _conclusive(choice):
        # Killed from outside, hung, or nothing passed: say it now, test again at the next start.
        log.warning("CPU variant self-test inconclusive, not kept: %s", choice.reason)
        return choice
    try:
        _write_atomic(cache_file, choice.model_dump_json(indent=2))
    except OSError as error:  # a read-only cache costs a self-test per start, nothing more
        log.warning("cannot keep the CPU variant verdict in %s: %s", cache_file, error)
    return choice


_EXTERNAL_DEATHS = ("hung for more than", "was killed", "died of signal SIGTERM",
                    "died of signal SIGINT", "died of signal SIGHUP")  # fmt: skip


def _conclusive(choice: CpuRuntimeChoice) -> bool:
    """A verdict worth keeping: a variant chosen, and no child killed from outside or hung
    (that says more about the machine's moment than about the variant)."""
    if not choice.variant:
        return False
    return not any(
        v.status == VariantStatus.REJECTED and any(word in v.reason for word in _EXTERNAL_DEATHS)
        for v in choice.verdicts
    )


def _read_cached(path: Path, key: str) -> CpuRuntimeChoice | None:
    try:
        choice = CpuRuntimeChoice.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if choice.key != key or (choice.path and not Path(choice.path).exists()):
        return None
    return choice


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.cpu_count() or 1


class SelfTestAborted(Exception):
    """The self-test was stopped from outside (daemon shutdown): no verdict, nothing cached."""


_running: set[subprocess.Popen[str]] = set()
_aborted = threading.Event()


def abort_self_test() -> None:
    """Stop a self-test in progress (the daemon calls this when it shuts down): its children are
    killed at once and the test ends without a verdict, so nothing inconclusive is cached."""
    _aborted.set()
    for process in list(_running):
        with contextlib.suppress(OSError):
            process.kill()


def _child(args: list[str], timeout_s: float) -> tuple[int | None, str, str]:
    """(exit status or None when it hung, stdout, last stderr line)."""
    if _aborted.is_set():
        raise SelfTestAborted("the self-test was stopped")
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.runtime.selftest", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _running.add(process)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None, "", ""
    finally:
        _running.discard(process)
    if _aborted.is_set():
        raise SelfTestAborted("the self-test was stopped")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return process.returncode, stdout, lines[-1] if lines else ""


def _last_json(stdout: str) -> dict[str, object] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _features(name: str) -> str:
    features = X86_FEATURES.get(name)
    return f" ({features})" if features else ""


def _death(name: str, status: int | None, stderr: str, timeout_s: float) -> str:
    if status is None:
        return f"{name}: hung for more than {timeout_s:.0f} s in the self-test"
    if status < 0:
        number = -status
        if number == signal.SIGILL:
            needs = X86_FEATURES.get(name)
            return (
                f"{name}: illegal instruction (SIGILL) in its kernels; this CPU or its "
                f"hypervisor does not run {'its ' + needs + ' code' if needs else 'its code'}"
            )
        what = {
            signal.SIGSEGV: "crashed (segmentation fault)",
            signal.SIGBUS: "crashed (bus error)",
            signal.SIGABRT: "aborted",
            signal.SIGKILL: "was killed (out of memory?)",
        }.get(signal.Signals(number), f"died of signal {signal.Signals(number).name}")
        return f"{name}: {what} in the self-test"
    return f"{name}: failed the self-test (exit status {status}): {stderr or 'no message'}"


def _compare(reference: np.ndarray, logits: np.ndarray) -> str | None:
    """None when `logits` match the reference; otherwise what differs, in numbers."""
    if logits.shape != reference.shape:
        return f"logits of shape {logits.shape}, the reference has {reference.shape}"
    if not np.all(np.isfinite(logits)):
        return "computed non-finite logits (NaN or infinity)"
    scale = float(np.abs(reference).max()) or 1.0
    worst = float(np.abs(logits - reference).max()) / scale
    a, b = reference.ravel().astype(np.float64), logits.ravel().astype(np.float64)
    cosine = float(a @ b / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))
    if cosine < COSINE_MIN or worst > RELATIVE_ERROR_MAX:
        return (
            f"computed wrong numbers: its logits differ from the plain variant's by up to "
            f"{worst:.1%} of their range (cosine {cosine:.4f})"
        )
    return None


def _self_test(
    build: RuntimeBuild, cache_dir: Path, forced: list[str], threads: int, timeout_s: float
) -> CpuRuntimeChoice:
    from appliance.runtime.selftest_model import MODEL_VERSION, write_selftest_model

    variants = build.cpu_variants
    unknown = [name for name in forced if name not in variants]
    if unknown:
        known = ", ".join(variants)
        return CpuRuntimeChoice(
            variant="", path="",
            reason=f"runtime.cpu_variants names {', '.join(unknown)}, which this build lacks "
            f"(it has: {known})",
        )  # fmt: skip
    model = cache_dir / f"selftest-model-v{MODEL_VERSION}.gguf"
    if not model.exists():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            write_selftest_model(model)
        except OSError:  # unwritable cache: make the model anew in a scratch folder
            model = Path(tempfile.mkdtemp(prefix="appliance-selftest-")) / model.name
            write_selftest_model(model)
    status, stdout, stderr = _child(["scores", "--lib-dir", str(build.path)], timeout_s)
    result = _last_json(stdout) if status == 0 else None
    scores: dict[str, int] = dict(result["scores"]) if result else {}  # type: ignore[call-overload]
    if not scores:
        log.warning("could not read the CPU variants' scores (%s); trying them all", stderr)
        scores = {name: 1 for name in variants}
    reference = REFERENCE_VARIANT.get(platform.machine(), next(iter(variants), ""))
    if forced:
        order = forced
    else:
        order = sorted((n for n in variants if scores.get(n, 0) > 0), key=lambda n: -scores[n])
    verdicts = {
        name: CpuVariantVerdict(
            name=name,
            score=scores.get(name, 0),
            status=VariantStatus.NOT_TRIED,
            reason=_untried(name, scores.get(name, 0)),
        )
        for name in variants
    }
    with tempfile.TemporaryDirectory(prefix="appliance-selftest-") as scratch:
        expected = _run_variant(
            build, reference, model, Path(scratch), threads, timeout_s, verdicts
        )
        if expected is None and reference in order:
            order.remove(reference)
        for name in order:
            if name == reference:
                continue
            logits = _run_variant(build, name, model, Path(scratch), threads, timeout_s, verdicts)
            if logits is None:
                continue
            if expected is None:
                verdict = verdicts[name]
                verdict.status = VariantStatus.REJECTED
                verdict.reason = f"{name}: ran, but the plain {reference} variant did not"
                continue
            wrong = _compare(expected, logits)
            if wrong:
                verdicts[name].status = VariantStatus.REJECTED
                verdicts[name].reason = f"{name}: {wrong}"
        _confirm_timings(build, model, Path(scratch), threads, timeout_s, verdicts, order)
        if reference not in order and verdicts[reference].status == VariantStatus.PASSED:
            verdicts[reference].status = VariantStatus.NOT_TRIED
            verdicts[reference].reason = f"{reference}: the reference only (not in the candidates)"
    return _decide(build, [verdicts[n] for n in variants], order)


def _per_token_s(v: CpuVariantVerdict) -> float:
    # Prompt and generation together, per token, as one self-test round weighs them.
    return 1.0 / (v.decode_tok_s or 1e-9) + 1.0 / (v.prompt_tok_s or 1e-9)


def _confirm_timings(
    build: RuntimeBuild, model: Path, scratch: Path, threads: int, timeout_s: float,
    verdicts: dict[str, CpuVariantVerdict], order: list[str],
) -> None:  # fmt: skip
    """Time the contenders once more (the three fastest and the richest ISA) and keep each one's
    best figures: one noisy moment on a busy VM must not pick a slow variant for good."""
    survivors = [
        v for v in verdicts.values() if v.status == VariantStatus.PASSED and v.name in order
    ]
    if len(survivors) < 2:
        return
    contenders = sorted(survivors, key=_per_token_s)[:3]
    richest = max(survivors, key=lambda v: v.score)
    for verdict in {v.name: v for v in [*contenders, richest]}.values():
        before = (verdict.prompt_tok_s or 0.0, verdict.decode_tok_s or 0.0)
        if _run_variant(build, verdict.name, model, scratch, threads, timeout_s, verdicts) is None:
            continue  # died on a second run: rejected with the reason, never chosen
        verdict.prompt_tok_s = max(before[0], verdict.prompt_tok_s or 0.0)
        verdict.decode_tok_s = max(before[1], verdict.decode_tok_s or 0.0)
        verdict.reason = _passed(verdict)


def _passed(verdict: CpuVariantVerdict) -> str:
    return (
        f"{verdict.name}: passed; {verdict.decode_tok_s:g} tok/s generating, "
        f"{verdict.prompt_tok_s:g} tok/s reading the prompt"
    )


def _untried(name: str, score: int) -> str:
    if score == 0:
        return f"{name}: CPUID says this CPU lacks {X86_FEATURES.get(name) or 'its features'}"
    return f"{name}: not in runtime.cpu_variants"


def _run_variant(
    build: RuntimeBuild, name: str, model: Path, scratch: Path, threads: int, timeout_s: float,
    verdicts: dict[str, CpuVariantVerdict],
) -> np.ndarray | None:  # fmt: skip
    out = scratch / f"{name}.npy"
    status, stdout, stderr = _child(
        ["run", "--lib-dir", str(build.path), "--backend", str(build.cpu_variants[name]),
         "--model", str(model), "--out", str(out), "--threads", str(threads)],
        timeout_s,
    )  # fmt: skip
    verdict = verdicts[name]
    result = _last_json(stdout) if status == 0 else None
    if status != 0 or result is None or not out.exists():
        verdict.status = VariantStatus.REJECTED
        verdict.reason = _death(name, status, stderr, timeout_s)
        return None
    verdict.status = VariantStatus.PASSED
    verdict.prompt_tok_s = float(result["prompt_tok_s"])  # type: ignore[arg-type]
    verdict.decode_tok_s = float(result["decode_tok_s"])  # type: ignore[arg-type]
    verdict.reason = _passed(verdict)
    return np.load(out)


def _decide(
    build: RuntimeBuild, verdicts: list[CpuVariantVerdict], order: list[str]
) -> CpuRuntimeChoice:
    survivors = [v for v in verdicts if v.status == VariantStatus.PASSED and v.name in order]
    rejected = [v for v in verdicts if v.status == VariantStatus.REJECTED]
    rejected_words = "; ".join(v.reason for v in rejected)
    if not survivors:
        return CpuRuntimeChoice(
            variant="", path="", verdicts=verdicts,
            reason="no CPU variant of llama.cpp passed the self-test on this machine"
            + (f" ({rejected_words})" if rejected_words else ""),
        )  # fmt: skip

    fastest = min(_per_token_s(v) for v in survivors)
    near = [v for v in survivors if _per_token_s(v) <= fastest * (1 + TIE_MARGIN)]
    chosen = max(near, key=lambda v: (v.score, -_per_token_s(v)))
    chosen.status = VariantStatus.CHOSEN
    reason = (
        f"using {chosen.name}{_features(chosen.name)}: passed the self-test and was the fastest "
        f"of {len(survivors)} that passed ({chosen.decode_tok_s:g} tok/s generating, "
        f"{chosen.prompt_tok_s:g} tok/s reading)"
    )
    if rejected_words:
        reason += f"; rejected: {rejected_words}"
    return CpuRuntimeChoice(
        variant=chosen.name, path=str(build.cpu_variants[chosen.name]), reason=reason,
        verdicts=verdicts,
    )  # fmt: skip
