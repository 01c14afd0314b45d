"""`appliance rpc-server`: refuses what would be unsafe or cannot work, in one line each, and
runs llama.cpp's RPC server from the runtime with the configured address.

The runtime here is built without GGML_RPC, so the "found" case puts a stand-in executable
where `build-llama-runtime.sh --rpc` puts `ggml-rpc-server`: it prints the arguments it got.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers.daemon import run_cli


def test_without_an_address_it_says_which_setting_to_set(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "rpc-server", check=False)
    assert result.returncode == 2
    assert "rpc.server_listen is not set" in result.stderr


def test_it_refuses_to_listen_on_every_interface(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "rpc-server", check=False,
                     APPLIANCE_RPC__SERVER_LISTEN="0.0.0.0:50052")  # fmt: skip
    assert result.returncode == 2
    assert "no authentication" in result.stderr and "0.0.0.0:50052" in result.stderr


def test_a_runtime_without_rpc_is_named_with_how_to_get_one(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "rpc-server", check=False,
                     APPLIANCE_RPC__SERVER_LISTEN="127.0.0.1:50052")  # fmt: skip
    assert result.returncode == 1
    assert "built without GGML_RPC" in result.stderr
    assert "build-llama-runtime.sh --rpc" in result.stderr


def test_it_runs_the_runtimes_rpc_server_bound_to_the_configured_address(tmp_path: Path) -> None:
    build = tmp_path / "runtime" / "cpu"
    build.mkdir(parents=True)
    (build / "build-info.json").write_text(json.dumps({"llama_cpp_python": "0.3.36"}))
    (build / "libllama.so").write_bytes(b"")
    server = build / "ggml-rpc-server"
    server.write_text('#!/bin/sh\necho "rpc-server got: $*"\n')
    server.chmod(0o755)
    env = {"APPLIANCE_RUNTIME__LLAMA_DIR": str(tmp_path / "runtime"),
           "APPLIANCE_RPC__SERVER_LISTEN": "192.168.50.2:50052",
           "APPLIANCE_RPC__SERVER_DEVICE": "CUDA0"}  # fmt: skip
    printed = run_cli(tmp_path, "rpc-server", "--print-command", **env)
    assert printed.stdout.strip() == f"{server} -H 192.168.50.2 -p 50052 -d CUDA0"
    ran = run_cli(tmp_path, "rpc-server", **env)
    assert ran.stdout.strip() == "rpc-server got: -H 192.168.50.2 -p 50052 -d CUDA0"
