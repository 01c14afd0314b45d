"""`appliance models ...`: direct on the store without a daemon, through the daemon with one."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.daemon import Daemon, run_cli
from helpers.range_server import RangeServer
from helpers.tiny_gguf import write_tiny_model


def test_import_without_a_daemon_registers_the_model_and_is_idempotent(
    tmp_path: Path, embedded_model: Path
) -> None:
    first = run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smol", "--json")
    assert json.loads(first.stdout)["created"] is True
    again = run_cli(tmp_path, "models", "import", str(embedded_model), "--name", "smol", "--json")
    assert json.loads(again.stdout)["created"] is False
    listed = json.loads(run_cli(tmp_path, "models", "list", "--json").stdout)
    assert [(m["name"], m["architecture"], m["quantization"]) for m in listed] == [
        ("smol", "llama", "Q4_1")
    ]
    run_cli(tmp_path, "models", "rm", "smol")
    assert json.loads(run_cli(tmp_path, "models", "list", "--json").stdout) == []


def test_importing_a_file_that_is_not_a_model_fails_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_text("these are my notes, not a model")
    result = run_cli(tmp_path, "models", "import", str(junk), check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "not a GGUF" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(run_cli(tmp_path, "models", "list", "--json").stdout) == []


def test_showing_an_unknown_model_exits_1_naming_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "models", "show", "nope", check=False)
    assert result.returncode == 1
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_import_through_the_running_daemon_reports_the_existing_model(
    daemon: Daemon, embedded_model: Path
) -> None:
    result = run_cli(
        daemon.home, "models", "import", str(embedded_model), "--name", "smollm2", "--json"
    )
    assert json.loads(result.stdout)["created"] is False


def test_import_error_through_the_daemon_is_the_same_clear_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.gguf"
    result = run_cli(daemon.home, "models", "import", str(missing), check=False)
    assert result.returncode == 1
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_status_without_a_daemon_exits_3_and_says_how_to_start_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "status", check=False)
    assert result.returncode == 3
    assert "not running" in result.stderr and "appliance serve" in result.stderr


def test_catalog_shows_a_verdict_for_every_build_on_this_machine(tmp_path: Path) -> None:
    rows = json.loads(run_cli(tmp_path, "models", "catalog", "--json").stdout)
    assert len(rows) >= 40
    assert {row["verdict"] for row in rows} <= {"fits", "partial", "cpu_only", "does_not_fit"}
    small = next(r for r in rows if r["id"] == "deepseek-r1-distill-qwen-1.5b")
    assert small["verdict"] != "does_not_fit" and small["device_id"] == "cpu0"
    giant = next(r for r in rows if r["id"] == "deepseek-r1" and r["quantization"] == "Q8_0")
    assert giant["verdict"] == "does_not_fit"
    table = run_cli(tmp_path, "models", "catalog").stdout
    assert "r1-distill-qwen-7b" in table and "Q4_K_M" in table


def test_fit_of_a_catalog_build_explains_its_arithmetic(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "models", "fit", "deepseek-r1-distill-qwen-7b:Q4_K_M").stdout
    assert "57,344 B/token" in out and "cpu0" in out


def test_bundle_export_and_import_move_a_model_between_homes(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "Tiny-R1.Q8_0.gguf", "deepseek2")
    run_cli(tmp_path / "a", "models", "import", str(model), "--name", "r1-tiny")
    bundle = tmp_path / "r1-tiny.tar"
    run_cli(tmp_path / "a", "models", "export", "r1-tiny", "-o", str(bundle))
    imported = json.loads(run_cli(tmp_path / "b", "models", "import", str(bundle), "--json").stdout)
    assert imported["model"]["name"] == "r1-tiny" and imported["created"]
    fit = json.loads(run_cli(tmp_path / "b", "models", "fit", "r1-tiny", "--json").stdout)
    assert fit["devices"][0]["verdict"] == "cpu_only"
    assert "latent values (MLA)" in fit["devices"][0]["arithmetic"][1]


def test_verify_reports_damage_and_exits_1(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m.gguf", "llama")
    info = json.loads(run_cli(tmp_path, "models", "import", str(model), "--json").stdout)
    assert "ok" in run_cli(tmp_path, "models", "verify").stdout
    blob = Path(info["model"]["path"])
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-100] ^= 1
    blob.write_bytes(bytes(data))
    result = run_cli(tmp_path, "models", "verify", "--json", check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)[0]["ok"] is False


def test_import_from_a_url_on_the_lan(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    model = write_tiny_model(tmp_path / "www" / "DeepSeek-Tiny-Q4_0.gguf", "qwen2", quant="Q4_0")
    with RangeServer(tmp_path / "www") as server:
        server.drop_after[model.name] = [model.stat().st_size // 2]
        url = server.url(model.name)
        out = json.loads(run_cli(tmp_path, "models", "import", url, "--json").stdout)
    assert out["model"]["source"] == url and out["model"]["quantization"] == "Q4_0"


def test_media_lists_importable_files_under_a_path(tmp_path: Path) -> None:
    (tmp_path / "stick").mkdir()
    write_tiny_model(tmp_path / "stick" / "m.gguf", "llama")
    mounts = json.loads(
        run_cli(tmp_path, "models", "media", str(tmp_path / "stick"), "--json").stdout
    )
    assert [f["kind"] for f in mounts[0]["files"]] == ["gguf"]


def test_catalog_and_verify_through_the_running_daemon(daemon: Daemon) -> None:
    rows = json.loads(run_cli(daemon.home, "models", "catalog", "--json").stdout)
    assert any(r["device_id"] == "cpu0" for r in rows)
    results = json.loads(run_cli(daemon.home, "models", "verify", "smollm2", "--json").stdout)
    assert results == [{"name": "smollm2", "ok": True, "detail": "sha256 matches"}]
