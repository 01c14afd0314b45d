#!/usr/bin/env bash
# Benchmark only, never installed: llama.cpp's own `llama-server`, the peer that
# bench_vs_llama_server.py measures the appliance's worker against. Built from the vendored
# llama.cpp in the same llama-cpp-python sdist the installed bindings came from, configured with
# exactly the flags of packaging/runtime/build-llama-runtime.sh (plus the server switched on), and
# run on the very same libraries: the runtime cache's libllama / libggml / libggml-base and one CPU
# variant are copied beside the server, so only the server's own code is compiled here (a few
# minutes on 2 cores instead of the ~15 the CPU variants take).
#
# Which CPU variant: with GGML_BACKEND_DL the server loads every libggml-cpu-*.so found next to
# its executable and keeps the one with the best CPUID score; on a VM whose AMX faults that is
# `sapphirerapids`, which dies on the first decode. So the output folder holds only the variant
# the appliance's self-test chose (--variant), and the server can load nothing else.
#
# usage: benchmarks/build-llama-server.sh --runtime-dir DIR --variant NAME [--sdist TAR.GZ]
#                                         [--cache DIR] [--jobs N]
# prints the folder that holds `llama-server` on its last line.
set -euo pipefail

runtime_dir="" variant="" sdist="" jobs="$(nproc)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ai-appliance/llama-server"
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime-dir) runtime_dir="$2"; shift 2 ;;
    --variant) variant="$2"; shift 2 ;;
    --sdist) sdist="$2"; shift 2 ;;
    --cache) cache="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-llama-server: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
info="$runtime_dir/build-info.json"
[ -f "$info" ] || { echo "build-llama-server: --runtime-dir must be a finished runtime build (no $info)" >&2; exit 2; }
[ -f "$runtime_dir/libggml-cpu-$variant.so" ] || {
  echo "build-llama-server: --variant '$variant' is not in $runtime_dir (see libggml-cpu-*.so there)" >&2; exit 2; }
version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["llama_cpp_python"])' "$info")"
want_sha="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_sha256"])' "$info")"
# The runtime's flags, read back from its build-info.json, with the server (a tool) switched on.
mapfile -t flags < <(python3 - "$info" <<'EOF'
import json, sys
for flag in json.load(open(sys.argv[1]))["flags"]:
    if flag.startswith(("-DLLAMA_BUILD_TOOLS=", "-DLLAMA_BUILD_SERVER=")):
        continue
    print(flag)
print("-DLLAMA_BUILD_TOOLS=ON")
print("-DLLAMA_BUILD_SERVER=ON")
EOF
)

entry="$cache/$(basename "$runtime_dir")"
if [ ! -x "$entry/bin/llama-server" ]; then
  # Kept until the server is built: an interrupted or failed build resumes where it stopped.
  work="$entry.work"
  mkdir -p "$work"
  if [ -z "$sdist" ]; then
    echo ">> fetching the llama-cpp-python $version source" >&2
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
    sdist="$(echo "$work"/llama_cpp_python-*.tar.gz)"
  fi
  got_sha="$(sha256sum "$sdist" | cut -d' ' -f1)"
  [ "$got_sha" = "$want_sha" ] || {
    echo "build-llama-server: $sdist is not the source the runtime was built from ($got_sha != $want_sha)" >&2; exit 1; }
  if [ ! -f "$work/build/Makefile" ]; then
    tar -xzf "$sdist" -C "$work"
    src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
    echo ">> configuring with the runtime's ${#flags[@]} flags" >&2
    cmake -S "$src" -B "$work/build" "${flags[@]}" >"$work/configure.log" 2>&1 || {
      tail -40 "$work/configure.log" >&2; exit 1; }
  fi
  # The libraries the server links against are the runtime's own (same source, same flags), so
  # they are copied in rather than rebuilt; `/fast` targets build one target without its
  # dependencies (ggml's would pull in every CPU variant).
  mkdir -p "$work/build/bin"
  cp -a "$runtime_dir"/libllama.so* "$runtime_dir"/libggml.so* "$runtime_dir"/libggml-base.so* "$work/build/bin/"
  echo ">> compiling llama-server with $jobs jobs (a few minutes)" >&2
  for target in cpp-httplib vendor-hash llama-common-base llama-common mtmd llama-ui-assets llama-ui \
      server-context llama-server-impl llama-server; do
    make -C "$work/build" -j "$jobs" "$target/fast" >>"$work/build.log" 2>&1 || {
      grep -v '^make\|Building\|Linking\|Built target' "$work/build.log" | tail -30 >&2
      echo "build-llama-server: building $target failed (log: $work/build.log)" >&2; exit 1; }
  done
  partial="$entry.partial.$$"
  rm -rf "$partial"; mkdir -p "$partial/bin"
  cp -a "$work/build/bin/llama-server" "$work/build/bin/"lib*.so* "$partial/bin/"
  cp "$info" "$partial/runtime-build-info.json"
  rm -rf "$entry"; mv "$partial" "$entry"
  rm -rf "$work"
fi
# Exactly one CPU variant beside the executable: the one the self-test chose.
rm -f "$entry"/bin/libggml-cpu-*.so
cp "$runtime_dir/libggml-cpu-$variant.so" "$entry/bin/"
echo ">> llama-server ready with the $variant CPU variant" >&2
echo "$entry/bin"
