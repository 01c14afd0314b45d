#!/usr/bin/env bash
# Builds llama.cpp's shared libraries for one runtime (cpu, cuda or cann) from the source that
# the installed llama-cpp-python bindings vendor, so the ctypes bindings and the libraries are
# always the same version. Never tuned to the building machine: GGML_NATIVE=OFF, every CPU
# variant as its own loadable backend (GGML_BACKEND_DL), chosen at run time by the appliance's
# runtime probe (appliance/runtime/), not by ggml's CPUID score.
#
# usage: build-llama-runtime.sh --version V --dest DIR [--runtime cpu|cuda|cann]
#                               [--cache DIR] [--jobs N] [--configure-only] [--rpc]
#
# --rpc adds llama.cpp's RPC backend (GGML_RPC: libggml-rpc.so, for `rpc.peers`) and its
# server (`ggml-rpc-server`, run by `appliance rpc-server`). Not built or tested by the
# project's CI so far (docs/scale-out.md); the RPC protocol has no authentication.
#
# The finished build is cached under --cache by version + runtime + flags + architecture (the
# CPU build takes ~15 minutes on 2 cores), then copied to DEST. A cache entry is only complete
# when its build-info.json exists: an interrupted build is never reused.
set -euo pipefail

version="" dest="" runtime="cpu" jobs="$(nproc)" configure_only="" rpc=""
cache="${AI_APPLIANCE_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-appliance/llama-runtime}"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --dest) dest="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --cache) cache="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --configure-only) configure_only=1; shift ;;
    --rpc) rpc=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-llama-runtime: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$version" ] || { echo "build-llama-runtime: --version is required" >&2; exit 2; }
[ -n "$dest" ] || [ -n "$configure_only" ] || {
  echo "build-llama-runtime: --dest is required" >&2; exit 2; }

arch="$(uname -m)"
common_flags=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DGGML_NATIVE=OFF
  -DGGML_BACKEND_DL=ON
  -DLLAMA_CURL=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_TOOLS=OFF
  -DLLAMA_BUILD_SERVER=OFF
  # Libraries find each other next to themselves wherever they are copied.
  "-DCMAKE_INSTALL_RPATH=\$ORIGIN"
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
)
case "$runtime" in
  cpu)
    # Every variant of this architecture (x86_64: x64 … sapphirerapids; arm64: armv8.0 …
    # armv9.2): one package runs on any CPU of its architecture.
    flags=("${common_flags[@]}" -DGGML_CPU_ALL_VARIANTS=ON) ;;
  cuda)
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || {
      echo "build-llama-runtime: the CUDA build needs the CUDA toolkit (nvcc); install it first" >&2
      exit 2; }
    command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
    cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
    ls "$cuda_lib"/libcublas.so* /usr/local/cuda/lib64/libcublas.so* >/dev/null 2>&1 || ldconfig -p | grep -q 'libcublas\.so' || {
      echo "build-llama-runtime: the CUDA build needs cuBLAS, which is not installed beside nvcc" \
        "($cuda_lib); install the CUDA toolkit's libraries (cuda-libraries-dev)" >&2
      exit 2; }
    # Ampere, Ada, Hopper as SASS, plus PTX of the newest for later GPUs to JIT.
    flags=("${common_flags[@]}" -DGGML_CPU_ALL_VARIANTS=ON -DGGML_CUDA=ON
           "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-80-real;86-real;89-real;90-real;90-virtual}") ;;
  cann)
    # Needs the CANN toolkit's environment (source .../ascend-toolkit/set_env.sh) first.
    [ -n "${ASCEND_TOOLKIT_HOME:-}" ] || {
      echo "build-llama-runtime: the CANN build needs the CANN toolkit; source its set_env.sh first" >&2
      exit 2; }
    flags=("${common_flags[@]}" -DGGML_CPU_ALL_VARIANTS=ON -DGGML_CANN=ON
           "-DSOC_TYPE=${SOC_TYPE:-}") ;;
  *) echo "build-llama-runtime: --runtime must be cpu, cuda or cann, not '$runtime'" >&2; exit 2 ;;
esac

if [ -n "$rpc" ]; then
  # The RPC backend as one more loadable library, and the tools folder for its server (only
  # the named targets below are compiled, not every tool).
  flags+=(-DGGML_RPC=ON -DLLAMA_BUILD_TOOLS=ON)
fi

flags_hash="$(printf '%s\n' "${flags[@]}" | sha256sum | cut -c1-12)"
key="llama-cpp-python-${version}-${runtime}-${arch}-${flags_hash}"
entry="$cache/$key"

stage() { echo ">> [runtime $runtime] $*"; }

if [ -n "$configure_only" ] || [ ! -f "$entry/build-info.json" ]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/llama-runtime.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  stage "fetching the llama-cpp-python $version source (its vendored llama.cpp)"
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" \
    -d "$work"
  tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  stage "configuring (${#flags[@]} flags, key $key)"
  cmake -S "$src" -B "$work/build" "${flags[@]}" >"$work/configure.log" 2>&1 || {
    tail -40 "$work/configure.log" >&2; exit 1; }
  if [ -n "$configure_only" ]; then
    cmake --build "$work/build" --target help | sed -n 's/^\.\.\. \(ggml-[a-z0-9_.-]*\)$/\1/p' \
      | grep -v -- '-feats$' | sort
    stage "configured (not built): $key"
    exit 0
  fi
  targets=(llama ggml ggml-base)
  [ -z "$rpc" ] || targets+=(ggml-rpc ggml-rpc-server)
  mapfile -t variants < <(cmake --build "$work/build" --target help | sed -n '/-feats/d; s/^\.\.\. \(ggml-cpu-[^ ]*\).*/\1/p; s/^\.\.\. \(ggml-cuda\|ggml-cann\)$/\1/p')
  stage "compiling ${#variants[@]} backend libraries with $jobs jobs: ${variants[*]}"
  # A line per 25 files compiled: progress without flooding the log (make's own percentages
  # stay at 0% for most of a multi-target build).
  cmake --build "$work/build" -j "$jobs" --target "${targets[@]}" "${variants[@]}" 2>&1 \
    | tee "$work/build.log" \
    | awk '/Building/ { n++; if (n % 25 == 0) { print "   " n " files compiled"; fflush() } }'
  [ "${PIPESTATUS[0]}" -eq 0 ] || { grep -m20 -B2 -A8 'error' "$work/build.log" >&2; exit 1; }
  mkdir -p "$cache"
  partial="$entry.partial.$$"
  rm -rf "$partial"; mkdir -p "$partial"
  # BACKEND_DL puts every library in bin/; keep the real files and their soname links.
  cp -a "$work/build/bin/"lib*.so* "$partial/"
  [ -z "$rpc" ] || cp -a "$work/build/bin/ggml-rpc-server" "$partial/"
  source_sha="$(sha256sum "$work"/llama_cpp_python-*.tar.gz | cut -d' ' -f1)"
  printf '{\n  "llama_cpp_python": "%s",\n  "runtime": "%s",\n  "arch": "%s",\n  "source_sha256": "%s",\n  "flags": [%s],\n  "built": "%s"\n}\n' \
    "$version" "$runtime" "$arch" "$source_sha" \
    "$(printf '"%s",' "${flags[@]}" | sed 's/,$//')" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    >"$partial/build-info.json"
  rm -rf "$entry"; mv "$partial" "$entry"
  stage "built and cached in $entry"
else
  stage "using the cached build $entry"
fi

mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"; cp -a "$entry" "$dest.new"
rm -rf "$dest"; mv "$dest.new" "$dest"
stage "installed in $dest"
