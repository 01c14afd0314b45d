"""Bundles: export a model to one tar, import it on another box; hostile tars are refused."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import ModelFormatError
from appliance.records import ModelFormat
from appliance.store import ModelStore
from appliance.store.bundle import export_bundle, import_bundle
from appliance.store.importing import import_path
from helpers.tiny_gguf import write_tiny_model
from helpers.tiny_onnx import write_tiny_onnx


@pytest.fixture
def box_a(tmp_path: Path) -> Iterator[ModelStore]:
    store = ModelStore(tmp_path / "box-a")
    yield store
    store.close()


@pytest.fixture
def box_b(tmp_path: Path) -> Iterator[ModelStore]:
    store = ModelStore(tmp_path / "box-b")
    yield store
    store.close()


def leftovers(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.models_dir.rglob("*"))


def test_a_gguf_travels_by_bundle_with_its_name_digest_and_source(tmp_path, box_a, box_b):
    src = write_tiny_model(tmp_path / "R1-Tiny-Q4_0.gguf", "deepseek2", quant="Q4_0")
    original = box_a.import_file(src, "r1-tiny").model
    (tmp_path / "usb").mkdir()
    bundle = export_bundle(box_a, "r1-tiny", tmp_path / "usb" / "r1-tiny.tar")
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["manifest.json", "model/R1-Tiny-Q4_0.gguf"]
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["sha256"] == original.sha256 and manifest["name"] == "r1-tiny"
    copied = import_path(box_b, bundle).model
    assert (copied.name, copied.sha256, copied.source) == ("r1-tiny", original.sha256, str(src))
    assert copied.architecture == "deepseek2" and copied.shape == original.shape
    assert [r.ok for r in box_b.verify()] == [True]


def test_an_onnx_folder_travels_by_bundle(tmp_path, box_a, box_b):
    import_path(box_a, write_tiny_onnx(tmp_path / "onnx", quant="int8"), "tiny-onnx")
    bundle = export_bundle(box_a, "tiny-onnx", tmp_path / "onnx.tar")
    copied = import_bundle(box_b, bundle, "renamed").model
    assert copied.format == ModelFormat.ONNX and copied.quantization == "int8"
    assert copied.sha256 == box_a.get("tiny-onnx").sha256
    assert [r.ok for r in box_b.verify("renamed")] == [True]


def test_a_flipped_byte_in_the_bundle_is_caught_before_anything_is_registered(
    tmp_path, box_a, box_b
):
    box_a.import_file(write_tiny_model(tmp_path / "m.gguf", "llama"), "m")
    bundle = export_bundle(box_a, "m", tmp_path / "m.tar")
    data = bytearray(bundle.read_bytes())
    data[-20_000] ^= 0xFF  # inside the model file's bytes, well before the tar's end blocks
    bundle.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=r"checksum mismatch for model/m\.gguf"):
        import_path(box_b, bundle)
    assert box_b.list() == []
    assert leftovers(box_b) == ["blobs"]


def hostile_bundle(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    manifest = {
        "bundle_version": 1, "name": "evil", "format": "gguf",
        "files": [{"path": "model/m.gguf", "size": 4, "sha256": "0" * 64}],
    }  # fmt: skip
    with tarfile.open(path, "w") as tar:
        raw = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (member("model/../../etc/cron.d/x"), r"unsafe path"),
        (member("/etc/passwd"), r"unsafe path"),
        (member("elsewhere/m.gguf"), r"outside model/"),
        (member("model/m.gguf", tarfile.SYMTYPE, "/etc/shadow"), r"symbolic link"),
        (member("model/m.gguf", tarfile.LNKTYPE, "manifest.json"), r"hard link"),
        (member("model/m.gguf", tarfile.CHRTYPE), r"device file"),
        (member("model/m.gguf", tarfile.FIFOTYPE), r"FIFO"),
        (member("model/extra.bin"), r"not listed in the manifest"),
    ],
    ids=["dotdot", "absolute", "outside", "symlink", "hardlink", "device", "fifo", "unlisted"],
)
def test_hostile_bundle_entries_are_refused_and_leave_nothing(tmp_path, box_b, entry, message):
    bundle = hostile_bundle(tmp_path / "evil.tar", entry, b"GGUF")
    with pytest.raises(ModelFormatError, match=message):
        import_bundle(box_b, bundle)
    assert box_b.list() == [] and leftovers(box_b) == ["blobs"]
    assert not (tmp_path / "etc").exists()


def test_a_tar_without_a_manifest_is_not_a_bundle(tmp_path, box_b):
    path = tmp_path / "plain.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(write_tiny_model(tmp_path / "m.gguf", "qwen2"), "m.gguf")
    with pytest.raises(ModelFormatError, match="not a model bundle"):
        import_path(box_b, path)


def test_a_bundle_cut_short_is_refused(tmp_path, box_a, box_b):
    box_a.import_file(write_tiny_model(tmp_path / "m.gguf", "llama"), "m")
    bundle = export_bundle(box_a, "m", tmp_path / "m.tar")
    bundle.write_bytes(bundle.read_bytes()[:-60_000])
    with pytest.raises(ModelFormatError):
        import_path(box_b, bundle)
    assert box_b.list() == [] and leftovers(box_b) == ["blobs"]
