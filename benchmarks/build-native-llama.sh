#!/usr/bin/env bash
# Benchmark only, never installed: a `-march=native` build of the same llama.cpp source the
# runtime uses, for bench_runtime.py to compare the portable build's chosen variant against.
# On a CPU whose AMX faults (the runtime issue's Xeon VM) a plain native build dies on its first
# decode, so AMX is switched off after -march=native (a compiler wrapper appends -mno-amx-*).
#
# usage: benchmarks/build-native-llama.sh VERSION DEST [--keep-amx]
set -euo pipefail
version="$1" dest="$2" keep_amx="${3:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/llama-native.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
compilers=()
if [ -z "$keep_amx" ]; then
  for tool in gcc g++; do
    printf '#!/bin/sh\nexec %s "$@" -mno-amx-tile -mno-amx-int8 -mno-amx-bf16\n' "$(command -v $tool)" \
      >"$work/$tool-noamx"
    chmod +x "$work/$tool-noamx"
  done
  compilers=(-DCMAKE_C_COMPILER="$work/gcc-noamx" -DCMAKE_CXX_COMPILER="$work/g++-noamx")
fi
echo ">> configuring a native build (-march=native${keep_amx:+, AMX kept})"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_NATIVE=ON -DGGML_BACKEND_DL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
  "-DCMAKE_INSTALL_RPATH=\$ORIGIN" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON "${compilers[@]}" \
  >"$work/configure.log"
echo ">> compiling (a few minutes)"
cmake --build "$work/build" -j "$(nproc)" --target llama ggml ggml-base ggml-cpu >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
rm -rf "$dest"; mkdir -p "$dest"
cp -a "$work/build/bin/"lib*.so* "$dest/"
echo ">> native build in $dest"
