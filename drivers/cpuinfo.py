"""Reading /proc/cpuinfo: CPU identity, ISA flags, and which llama.cpp CPU build fits them.

Pure functions over text, importing only the standard library, so that recorded cpuinfo files
from real machines (tests/fixtures/cpu/) exercise exactly the code the box runs.
"""

from __future__ import annotations

from dataclasses import dataclass

X86_VENDORS = {
    "GenuineIntel": "Intel",
    "AuthenticAMD": "AMD",
    "HygonGenuine": "Hygon",
    "CentaurHauls": "Centaur",
    "Shanghai": "Zhaoxin",
}

# aarch64 kernels print no `model name` and no vendor; lscpu names the CPU from the MIDR
# fields `CPU implementer` / `CPU part`. Subset of util-linux `sys-utils/lscpu-arm.c` (server
# parts only). lscpu calls HiSilicon's 0xd01 "TaiShan-v110"; administrators know the SoC as
# Kunpeng 920, so both names are kept.
ARM_IMPLEMENTERS: dict[int, tuple[str, dict[int, str]]] = {
    0x41: (
        "ARM",
        {
            0xD0C: "Neoverse-N1",
            0xD40: "Neoverse-V1",
            0xD49: "Neoverse-N2",
            0xD4F: "Neoverse-V2",
            0xD84: "Neoverse-V3",
            0xD8E: "Neoverse-N3",
        },
    ),
    0x43: ("Cavium", {0x0AF: "ThunderX2-99xx", 0x0B8: "ThunderX3-T110"}),
    0x46: ("Fujitsu", {0x001: "A64FX"}),
    0x48: ("HiSilicon", {0xD01: "Kunpeng 920 (TaiShan-v110)", 0xD02: "TaiShan-v120"}),
    0x4E: ("NVIDIA", {0x004: "Carmel"}),
    0x50: ("APM", {0x000: "X-Gene"}),
    0x51: ("Qualcomm", {0x001: "Oryon", 0xC00: "Falkor"}),
    0x61: ("Apple", {}),
    0x70: ("Phytium", {0x662: "FTC662", 0x663: "FTC663"}),
    0xC0: ("Ampere", {0xAC3: "Ampere-1", 0xAC4: "Ampere-1a"}),
}

# ggml feature names → /proc/cpuinfo flags that provide them.
_X86_FEATURES: dict[str, tuple[str, ...]] = {
    "SSE42": ("sse4_2",),
    "AVX": ("avx",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "AVX2": ("avx2",),
    "BMI2": ("bmi2",),
    "AVX_VNNI": ("avx_vnni",),
    "AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",),
    "AVX512_BF16": ("avx512_bf16",),
    "AMX_TILE": ("amx_tile",),
    "AMX_INT8": ("amx_int8",),
}
# Flags worth showing an administrator or a planner, in display order (kernel spellings).
X86_FLAGS_OF_INTEREST = (*(f for flags in _X86_FEATURES.values() for f in flags), "amx_bf16")
ARM_FLAGS_OF_INTEREST = ("asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2", "sme")
# Weights of ggml's loader score (`ggml/src/ggml-cpu/arch/x86/cpu-feats.cpp`, as quoted from
# b10941): the loader keeps the highest-scoring variant whose features the CPU has all of.
# AMX_TILE is unscored.
_X86_WEIGHTS = {
    "FMA": 1,
    "F16C": 2,
    "SSE42": 4,
    "BMI2": 8,
    "AVX": 16,
    "AVX2": 32,
    "AVX_VNNI": 64,
    "AVX512": 128,
    "AVX512_VBMI": 256,
    "AVX512_BF16": 512,
    "AVX512_VNNI": 1024,
    "AMX_INT8": 2048,
}
_HASWELL = ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2")
_SKYLAKEX = (*_HASWELL, "AVX512")
# The CPU variants llama.cpp builds with GGML_CPU_ALL_VARIANTS, by their tags (the library is
# `libggml-cpu-<tag>.so`). Source: ggml-org/llama.cpp `ggml/src/CMakeLists.txt`. Read directly
# at commit a5410f04 (an older tree: 6 variants, same tags and feature names); the current
# 14-variant list is as quoted from release b10941 in public build notes, and it matches the 14
# x86 library names of llama.cpp's Linux release archives. Recheck when bumping llama.cpp.
X86_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x64", ()),
    ("sse42", ("SSE42",)),
    ("sandybridge", ("SSE42", "AVX")),
    ("ivybridge", ("SSE42", "AVX", "F16C")),
    ("piledriver", ("SSE42", "AVX", "F16C", "FMA")),
    ("haswell", _HASWELL),
    ("skylakex", _SKYLAKEX),
    ("cannonlake", (*_SKYLAKEX, "AVX512_VBMI")),
    ("cascadelake", (*_SKYLAKEX, "AVX512_VNNI")),
    ("icelake", (*_SKYLAKEX, "AVX512_VBMI", "AVX512_VNNI")),
    ("cooperlake", (*_SKYLAKEX, "AVX512_VNNI", "AVX512_BF16")),
    ("zen4", (*_SKYLAKEX, "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16")),
    ("alderlake", (*_HASWELL, "AVX_VNNI")),
    (
        "sapphirerapids",
        (*_SKYLAKEX, "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_TILE", "AMX_INT8"),
    ),
)
# The Linux aarch64 variants, each a superset of the one before (same file, as quoted in public
# build notes; ggml's DOTPROD=asimddp, FP16_VECTOR_ARITHMETIC=asimdhp, MATMUL_INT8=i8mm). Newer
# trees also ship armv8.6_2; it is left out until its feature list is read from the source.
ARM_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("armv8.0_1", ()),
    ("armv8.2_1", ("asimddp",)),
    ("armv8.2_2", ("asimddp", "asimdhp")),
    ("armv8.2_3", ("asimddp", "asimdhp", "sve")),
    ("armv8.6_1", ("asimddp", "asimdhp", "sve", "i8mm")),
    ("armv9.2_1", ("asimddp", "asimdhp", "sve", "i8mm", "sme")),
    ("armv9.2_2", ("asimddp", "asimdhp", "sve", "i8mm", "sve2", "sme")),
)
# x86-64 psABI micro-architecture levels (x86-64-v2..v4), in /proc/cpuinfo spellings
# (`pni` is SSE3, `abm` is LZCNT).
X86_LEVELS = (
    ("x86-64-v2", ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3")),
    ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")),
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPUs, before any live counting."""

    architecture: str
    """`x86_64`, `aarch64`, or `unknown` (judged from the file, not from this machine)."""
    vendor: str
    model_name: str
    flags: frozenset[str]
    processors: int
    """Logical CPUs listed."""
    sockets: int | None
    """Distinct `physical id` values; None where the file has none (aarch64)."""
    cores: int | None
    """Distinct (`physical id`, `core id`) pairs; None where the file has none (aarch64)."""


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of /proc/cpuinfo (x86 or aarch64 layout)."""
    blocks = _blocks(text)
    merged: dict[str, str] = {}
    for block in blocks:  # old aarch64 kernels print `Features` once, above the blocks
        for key, value in block.items():
            merged.setdefault(key, value)
    # Count lines, not blocks: old aarch64 kernels list every `processor : N` in one block.
    processors = sum(1 for line in text.splitlines() if line.split(":")[0].strip() == "processor")
    if "flags" in merged:
        return _x86_info(blocks, merged, processors)
    if "Features" in merged or "CPU implementer" in merged:
        return _arm_info(merged, processors)
    return CpuInfo(
        "unknown",
        "unknown",
        merged.get("model name", "unknown CPU"),
        frozenset(),
        processors,
        None,
        None,
    )


def isa_flags_of_interest(info: CpuInfo) -> list[str]:
    wanted = ARM_FLAGS_OF_INTEREST if info.architecture == "aarch64" else X86_FLAGS_OF_INTEREST
    return [flag for flag in wanted if flag in info.flags]


def llama_cpp_cpu_variant(info: CpuInfo) -> str | None:
    """The llama.cpp CPU variant tag its loader would pick on this CPU; None off x86/aarch64.

    Matters for prebuilt multi-variant llama.cpp builds; a llama-cpp-python compiled on the
    box uses -march=native instead, but the tag is still a compact summary of the ISA.
    """
    if info.architecture == "x86_64":
        usable = [
            (tag, feats)
            for tag, feats in X86_VARIANTS
            if all(_has_x86(info.flags, feat) for feat in feats)
        ]
        return max(usable, key=lambda item: 1 + sum(_X86_WEIGHTS.get(f, 0) for f in item[1]))[0]
    if info.architecture == "aarch64":
        usable = [tag for tag, feats in ARM_VARIANTS if info.flags.issuperset(feats)]
        return usable[-1]
    return None


def x86_level(info: CpuInfo) -> str | None:
    """The highest x86-64 psABI level the flags satisfy (`x86-64` = baseline); None off x86."""
    if info.architecture != "x86_64":
        return None
    level = "x86-64"
    for name, flags in X86_LEVELS:
        if not info.flags.issuperset(flags):
            break
        level = name
    return level


def headline_isa(info: CpuInfo) -> str:
    """The one vector extension that matters most for inference speed, in words."""
    flags = info.flags
    if info.architecture == "aarch64":
        for flag, words in (("sve2", "SVE2"), ("sve", "SVE"), ("asimddp", "NEON dotprod")):
            if flag in flags:
                return words
        return "NEON"
    if "amx_int8" in flags:
        return "AMX"
    if _has_x86(flags, "AVX512"):
        return "AVX-512"
    for flag, words in (("avx2", "AVX2"), ("avx", "AVX")):
        if flag in flags:
            return words
    return "no AVX" if info.architecture == "x86_64" else "ISA unknown"


def _has_x86(flags: frozenset[str], feature: str) -> bool:
    return flags.issuperset(_X86_FEATURES[feature])


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _x86_info(blocks: list[dict[str, str]], merged: dict[str, str], processors: int) -> CpuInfo:
    vendor_id = merged.get("vendor_id", "")
    packages = {b["physical id"] for b in blocks if b.get("physical id")}
    cores = {
        (b["physical id"], b["core id"])
        for b in blocks
        if b.get("physical id") and b.get("core id")
    }
    return CpuInfo(
        architecture="x86_64",
        vendor=X86_VENDORS.get(vendor_id.strip(), vendor_id or "unknown"),
        model_name=merged.get("model name", "unknown x86-64 CPU"),
        flags=frozenset(merged.get("flags", "").split()),
        processors=processors,
        sockets=len(packages) or None,
        cores=len(cores) or None,
    )


def _arm_info(merged: dict[str, str], processors: int) -> CpuInfo:
    implementer = _hex(merged.get("CPU implementer"))
    part = _hex(merged.get("CPU part"))
    raw_implementer = merged.get("CPU implementer", "?")
    known = ARM_IMPLEMENTERS.get(implementer) if implementer is not None else None
    vendor, parts = known or ("", {})
    # Some kernels print a `model name`; the old `Processor : AArch64 Processor rev N` is no name.
    name = merged.get("model name", "")
    if not name and part is not None and part in parts:
        name = f"{vendor} {parts[part]}"
    if not name:
        name = f"ARM CPU (implementer {raw_implementer}, part {merged.get('CPU part', '?')})"
    return CpuInfo(
        architecture="aarch64",
        vendor=vendor or f"implementer {raw_implementer}",
        model_name=name,
        flags=frozenset(merged.get("Features", "").split()),
        processors=processors,
        sockets=None,
        cores=None,
    )


def _hex(value: str | None) -> int | None:
    try:
        return int(value, 16) if value else None
    except ValueError:
        return None
