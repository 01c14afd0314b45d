"""drivers/cpuinfo.py: which llama.cpp CPU build fits which ISA flags.

The flag sets are written by hand per variant (kernel spellings); the recorded real machines
are covered in test_cpu_driver.py.
"""

from __future__ import annotations

import pytest

from appliance.drivers.cpuinfo import CpuInfo, llama_cpp_cpu_variant, parse_cpuinfo, x86_level

HASWELL = "sse4_2 avx f16c fma avx2 bmi2"
AVX512 = "avx512f avx512cd avx512vl avx512dq avx512bw"


def x86(flags: str) -> CpuInfo:
    return parse_cpuinfo(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n")


def arm(features: str) -> CpuInfo:
    return parse_cpuinfo(
        f"processor\t: 0\nFeatures\t: fp asimd {features}\nCPU implementer\t: 0x41\n"
    )


@pytest.mark.parametrize(
    ("flags", "variant"),
    [
        ("fpu sse sse2", "x64"),
        ("sse4_2", "sse42"),
        ("sse4_2 avx", "sandybridge"),
        (HASWELL, "haswell"),
        (f"{HASWELL} avx_vnni", "alderlake"),
        (f"{HASWELL} {AVX512}", "skylakex"),
        (f"{HASWELL} {AVX512} avx512_vnni", "cascadelake"),
        (f"{HASWELL} {AVX512} avx512vbmi avx512_vnni", "icelake"),
        (f"{HASWELL} {AVX512} avx512vbmi avx512_vnni avx512_bf16", "zen4"),
        (
            f"{HASWELL} {AVX512} avx512vbmi avx512_vnni avx512_bf16 amx_tile amx_int8",
            "sapphirerapids",
        ),
        # avx512f alone is not AVX512 for ggml: it wants F, CD, VL, DQ and BW together.
        (f"{HASWELL} avx512f", "haswell"),
    ],
)
def test_x86_flags_pick_the_variant_ggmls_loader_would_pick(flags: str, variant: str) -> None:
    assert llama_cpp_cpu_variant(x86(flags)) == variant


@pytest.mark.parametrize(
    ("features", "variant"),
    [
        ("", "armv8.0_1"),
        ("asimddp", "armv8.2_1"),
        ("asimddp asimdhp", "armv8.2_2"),
        ("asimddp asimdhp sve", "armv8.2_3"),
        ("asimddp asimdhp sve i8mm", "armv8.6_1"),
        ("asimddp asimdhp sve i8mm sve2 sme", "armv9.2_2"),
        ("sve", "armv8.0_1"),  # SVE without dotprod matches no higher variant
    ],
)
def test_arm_features_pick_the_highest_variant_they_cover(features: str, variant: str) -> None:
    assert llama_cpp_cpu_variant(arm(features)) == variant


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ("fpu sse sse2", "x86-64"),
        ("cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3", "x86-64-v2"),
        # A level counts only when every lower level is met too.
        (f"cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3 {AVX512}", "x86-64-v2"),
    ],
)
def test_x86_psabi_level_needs_every_lower_level_too(flags: str, level: str) -> None:
    assert x86_level(x86(flags)) == level


def test_old_aarch64_layout_with_all_processors_in_one_block_counts_each() -> None:
    text = (
        "Processor\t: AArch64 Processor rev 4 (aarch64)\n"
        "processor\t: 0\nprocessor\t: 1\nprocessor\t: 2\n"
        "Features\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
    )

    info = parse_cpuinfo(text)

    assert (info.architecture, info.processors, info.model_name) == (
        "aarch64",
        3,
        "ARM Neoverse-N1",
    )


def test_unknown_arm_part_is_named_by_its_ids_rather_than_guessed() -> None:
    info = parse_cpuinfo(
        "processor\t: 0\nFeatures\t: fp\nCPU implementer\t: 0x99\nCPU part\t: 0x123\n"
    )

    assert info.model_name == "ARM CPU (implementer 0x99, part 0x123)"
    assert info.vendor == "implementer 0x99"
