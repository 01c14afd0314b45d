#!/usr/bin/env bash
# Builds llama.cpp's shared libraries for one runtime (cpu, cuda or cann) from the source that
# the installed llama-cpp-python bindings vendor, so the ctypes bindings and the libraries are
# always the same version. Never tuned to the building machine: GGML_NATIVE=OFF, every CPU
# variant as its own loadable backend (GGML_BACKEND_DL), chosen at run time by the appliance's
# runtime probe (appliance/runtime/), not by ggml's CPUID score.
#
# usage: build-llama-runtime.sh --version V --dest DIR [--runtime cpu|cuda|cann]
#                               [--cache DIR] [--jobs N] [--configure-only] [--rpc]
#                               [--check-cache]
#
# --check-cache only says whether this build is cached (exit 0, its folder on stdout) or not
# (exit 1): `make test-packages` builds the CUDA package only when that takes minutes, not an hour.
#
# --rpc adds llama.cpp's RPC backend (GGML_RPC: libggml-rpc.so, for `rpc.peers`) and its
# server (`ggml-rpc-server`, run by `appliance rpc-server`). Not built or tested by the
# project's CI so far (docs/scale-out.md); the RPC protocol has no authentication.
#
# The finished build is cached under --cache by version + runtime + flags + architecture (the
# CPU build takes ~15 minutes on 2 cores), then copied to DEST. A cache entry is only complete
# when its build-info.json exists: an interrupted build is never reused.
set -euo pipefail

version="" dest="" runtime="cpu" jobs="$(nproc)" configure_only="" rpc="" check_cache=""
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
    --check-cache) check_cache=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "build-llama-runtime: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$version" ] || { echo "build-llama-runtime: --version is required" >&2; exit 2; }
[ -n "$dest" ] || [ -n "$configure_only" ] || [ -n "$check_cache" ] || {
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
    command -v nvcc >/dev/null || export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
    command -v nvcc >/dev/null || {
      echo "build-llama-runtime: the CUDA build needs the CUDA toolkit (nvcc); install it first" >&2
      exit 2; }
    # nvcc names its real folder itself (a wrapper script or a symlink may stand in front of it).
    cuda_home="$(nvcc --dryrun -c /dev/null -x cu -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -1)/.."
    cuda_home="$(cd "$cuda_home" && pwd)"
    cuda_version="$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')"
    # PTX for compute 8.0 by default: one compile (2 cores cannot afford five), JIT-compiled by
    # the driver on first use on every Ampere-or-newer GPU (A100/A10/L4/L20/L40S/H20/H100/H200,
    # RTX 30/40/50) and cached (the runtime package points CUDA_CACHE_PATH at the state disk).
    # A build box with cores can add SASS: CUDA_ARCHITECTURES="80-real;86-real;89-real;90-real;90-virtual".
    flags=("${common_flags[@]}" -DGGML_CPU_ALL_VARIANTS=ON -DGGML_CUDA=ON
           "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-80-virtual}")
    # ggml's VMM memory pool links the driver library; without the toolkit's link stub
    # (pip-assembled toolkits have none) the legacy pool is used instead.
    if [ ! -e "$cuda_home/lib64/stubs/libcuda.so" ] && [ ! -e "$cuda_home/lib/stubs/libcuda.so" ]; then
      flags+=(-DGGML_CUDA_NO_VMM=ON)
    fi ;;
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

# The toolkit's version is part of the key: a CUDA 12 build is not a CUDA 13 build.
key_parts=("${flags[@]}")
[ -z "${cuda_version:-}" ] || key_parts+=("cuda $cuda_version")
flags_hash="$(printf '%s\n' "${key_parts[@]}" | sha256sum | cut -c1-12)"
key="llama-cpp-python-${version}-${runtime}-${arch}-${flags_hash}"
entry="$cache/$key"

stage() { echo ">> [runtime $runtime] $*"; }

if [ -n "$check_cache" ]; then
  [ -f "$entry/build-info.json" ] || exit 1
  echo "$entry"; exit 0
fi

# A CUDA toolkit that lacks cuBLAS (NVIDIA's pip-assembled toolkits ship nvcc and cudart only)
# is completed with NVIDIA's own cuBLAS wheel of the same CUDA release, in a merged folder
# under the build's temporary directory; the system toolkit is never modified. Prints the
# toolkit root to build with. pip's cache (or PIP_FIND_LINKS) makes this work offline.
prepare_cuda_toolkit() {
  local home="$1" version="$2" work="$3" root="$3/cuda-root" wheel
  if ls "$home"/lib64/libcublas.so* "$home"/lib/libcublas.so* >/dev/null 2>&1; then
    echo "$home"; return
  fi
  stage "cuBLAS is not beside nvcc ($home): using NVIDIA's nvidia-cublas $version wheel" >&2
  python3 -m pip download --quiet --no-deps -d "$work/cublas-wheel" \
    "nvidia-cublas==${version}.*" >&2 || {
      echo "build-llama-runtime: cuBLAS for CUDA $version is neither installed nor downloadable" \
        "(pip download nvidia-cublas==${version}.*); install the toolkit's libraries" \
        "(cuda-libraries-dev) or put the wheel in PIP_FIND_LINKS" >&2
      exit 2; }
  wheel="$(ls "$work"/cublas-wheel/nvidia_cublas-*.whl)"
  python3 -m zipfile -e "$wheel" "$work/cublas"
  # Symlinks to every toolkit file; nvcc itself is copied, because it finds its headers and
  # cicc relative to where it really lives.
  mkdir -p "$root"
  cp -as "$home/." "$root/"
  rm -rf "${root:?}/bin"; cp -a "$home/bin" "$root/bin"
  for dir in lib64 targets/"$(uname -m)"-linux/include targets/"$(uname -m)"-linux/lib; do
    [ -L "$root/$dir" ] || continue
    case "$dir" in lib64) ln -sfn lib "$root/$dir" ;;
                   */include) ln -sfn ../../include "$root/$dir" ;;
                   */lib) ln -sfn ../../lib "$root/$dir" ;; esac
  done
  local f base
  for f in "$work"/cublas/nvidia/cu*/include/*; do ln -sf "$f" "$root/include/"; done
  for f in "$work"/cublas/nvidia/cu*/lib/*.so.*; do
    base="$(basename "$f")"
    ln -sf "$f" "$root/lib/$base"; ln -sf "$base" "$root/lib/${base%%.so.*}.so"
  done
  echo "$root"
}

if [ -n "$configure_only" ] || [ ! -f "$entry/build-info.json" ]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/llama-runtime.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  # The toolkit first: a missing cuBLAS must stop the build before anything is downloaded.
  toolkit_flags=()
  if [ "$runtime" = cuda ]; then
    cuda_root="$(prepare_cuda_toolkit "$cuda_home" "$cuda_version" "$work")"
    toolkit_flags=("-DCMAKE_CUDA_COMPILER=$cuda_root/bin/nvcc" "-DCUDAToolkit_ROOT=$cuda_root")
  fi
  stage "fetching the llama-cpp-python $version source (its vendored llama.cpp)"
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" \
    -d "$work"
  tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  stage "configuring (${#flags[@]} flags, key $key)"
  cmake -S "$src" -B "$work/build" "${flags[@]}" "${toolkit_flags[@]}" >"$work/configure.log" 2>&1 || {
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
  if [ "$runtime" = cuda ]; then
    # The CUDA runtime and cuBLAS travel with the build (NVIDIA allows redistributing them
    # with an application): an offline box needs nothing from NVIDIA but its driver.
    # libggml-cuda finds them next to itself ($ORIGIN).
    for lib in libcudart libcublas libcublasLt; do
      soname="$(find -L "$cuda_root/lib64" "$cuda_root/lib" -maxdepth 1 -name "$lib.so.[0-9]*" \
                  2>/dev/null | sort | head -1)"
      [ -n "$soname" ] || { echo "build-llama-runtime: $lib is missing from $cuda_root" >&2; exit 1; }
      cp "$(readlink -f "$soname")" "$partial/$(basename "$soname")"
    done
  fi
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
