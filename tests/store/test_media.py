"""Removable media: a fake /proc/mounts and /sys/block, and real files on a 'stick' folder."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from appliance.errors import NotFound
from appliance.store import ModelStore
from appliance.store.bundle import export_bundle
from appliance.store.importing import import_path
from appliance.store.media import importable_files, removable_mounts, scan_mounts
from helpers.tiny_gguf import write_tiny_model
from helpers.tiny_onnx import write_tiny_onnx


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A fake /sys/block with a fixed disk and a removable one, and a mounts file."""
    sys_block = tmp_path / "sys" / "block"
    (sys_block / "sda" / "sda1").mkdir(parents=True)
    (sys_block / "sda" / "removable").write_text("0\n")
    (sys_block / "sda" / "sda1" / "partition").write_text("1\n")
    (sys_block / "sdb" / "sdb1").mkdir(parents=True)
    (sys_block / "sdb" / "removable").write_text("1\n")
    (sys_block / "sdb" / "sdb1" / "partition").write_text("1\n")
    stick = tmp_path / "media" / "USB STICK"
    stick.mkdir(parents=True)
    mounts = tmp_path / "mounts"
    escaped = str(stick).replace(" ", "\\040")  # as the kernel writes a space
    mounts.write_text(
        "/dev/sda1 / ext4 rw,relatime 0 0\n"
        "proc /proc proc rw 0 0\n"
        f"/dev/sdb1 {escaped} vfat rw,nosuid 0 0\n"
    )
    return mounts, sys_block, stick


def test_only_filesystems_on_removable_disks_are_listed(box):
    mounts, sys_block, stick = box
    [mount] = removable_mounts(mounts, sys_block)
    assert (mount.device, mount.mount_point, mount.filesystem) == ("/dev/sdb1", str(stick), "vfat")


def test_the_stick_lists_gguf_files_onnx_folders_and_bundles_but_not_junk(box, tmp_path):
    mounts, sys_block, stick = box
    write_tiny_model(stick / "DeepSeek-R1-Tiny-Q4_0.gguf", "qwen2", quant="Q4_0")
    (stick / "models").mkdir()
    write_tiny_onnx(stick / "models" / "tiny-onnx")
    (stick / "notes.gguf").write_text("not a model")
    (stick / "holiday.jpg").write_bytes(b"\xff\xd8")
    (stick / "link.gguf").symlink_to(stick / "DeepSeek-R1-Tiny-Q4_0.gguf")
    store = ModelStore(tmp_path / "state")
    store.import_file(write_tiny_model(tmp_path / "b.gguf", "llama"), "bundled")
    export_bundle(store, "bundled", stick / "bundled.tar")
    store.close()
    [mount] = scan_mounts(mounts, sys_block)
    listed = {Path(f.path).name: (f.kind, f.detail) for f in mount.files}
    assert listed == {
        "DeepSeek-R1-Tiny-Q4_0.gguf": ("gguf", ""),
        "tiny-onnx": ("onnx", ""),
        "notes.gguf": ("gguf", listed["notes.gguf"][1]),
        "bundled.tar": ("bundle", "bundle of bundled"),
    }
    assert listed["notes.gguf"][1].startswith("not importable: ")


def test_a_listed_file_imports_as_listed(box, tmp_path):
    _mounts, _sys, stick = box
    write_tiny_model(stick / "m.gguf", "deepseek2")
    [item] = importable_files(stick)
    store = ModelStore(tmp_path / "state")
    try:
        assert import_path(store, Path(item.path)).model.architecture == "deepseek2"
    finally:
        store.close()


def test_a_missing_mount_point_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        importable_files(tmp_path / "gone")


def hostile_header(kind: bytes, claimed: int) -> bytes:
    """A ustar header block of type `kind` whose size field claims `claimed` bytes."""
    block = bytearray(512)
    block[0:13] = b"manifest.json" if kind == b"0" else b"././@LongLink"
    block[100:108] = b"0000644\0"
    block[124:136] = f"{claimed:011o}\0".encode()
    block[156:157] = kind
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


@pytest.mark.parametrize("kind", [b"x", b"L", b"0"], ids=["pax", "gnu-longname", "manifest"])
def test_a_tar_whose_first_header_claims_gigabytes_is_skipped_without_reading_them(
    box, kind: bytes
) -> None:
    _mounts, _sys, stick = box
    claimed = 2 * 1024**3
    tar = stick / "hostile.tar"
    with tar.open("wb") as handle:
        handle.write(hostile_header(kind, claimed))
        handle.truncate(512 + claimed)  # sparse: costs no disk, but reads as 2 GiB of zeros
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    assert importable_files(stick) == []

    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < 64 * 1024**2, f"listing read {grown:,} bytes into memory"
