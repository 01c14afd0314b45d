"""`appliance serve` when something that is not a socket sits where the admin socket goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.daemon import free_port, run_cli


def make_directory(path: Path) -> str:
    path.mkdir()
    return "a directory"


def make_dangling_link(path: Path) -> str:
    path.symlink_to(path.parent / "gone" / "admin.sock")
    return "a symbolic link"


def make_file(path: Path) -> str:
    path.write_text("notes")
    return "a file"


@pytest.mark.parametrize("make", [make_directory, make_dangling_link, make_file])
def test_serve_refuses_in_one_line_when_the_socket_path_is_not_a_socket(tmp_path: Path, make):
    kind = make(tmp_path / "admin.sock")

    result = run_cli(tmp_path, "serve", check=False, APPLIANCE_LISTEN=f"127.0.0.1:{free_port()}")

    assert result.returncode == 2
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"admin.sock is {kind}, not a socket; remove it" in error
    assert "Traceback" not in result.stderr
    assert (tmp_path / "admin.sock").is_symlink() or (tmp_path / "admin.sock").exists()
