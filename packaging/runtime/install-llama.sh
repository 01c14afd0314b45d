#!/usr/bin/env bash
# Installs llama.cpp into a virtual environment the portable way:
#   1. llama-cpp-python as Python bindings only (LLAMA_BUILD=OFF: no native code in the wheel,
#      so pip can never hand us a wheel compiled with -march=native for another CPU);
#   2. the llama.cpp libraries of the same version, every CPU variant included, built by
#      build-llama-runtime.sh into <venv>/lib/ai-appliance/llama-runtime/<runtime>/, where the
#      appliance's runtime probe finds them and picks the variant that really runs here.
#
# usage: install-llama.sh VENV_PYTHON VERSION [cpu|cuda|cann]
# Both artefacts are cached per version and flags (see build-llama-runtime.sh), so a fresh
# clone on a machine that built them once installs in seconds.
set -euo pipefail
python="$1" version="$2" runtime="${3:-cpu}"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${AI_APPLIANCE_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-appliance/llama-runtime}"
prefix="$("$python" -c 'import sys; print(sys.prefix)')"

wheels="$cache/bindings-$version"
if ! ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  echo ">> building llama-cpp-python $version as bindings only (no native code)"
  rm -rf "$wheels.partial"
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$python" -m pip wheel --quiet --no-deps \
    --no-cache-dir "llama-cpp-python==$version" -w "$wheels.partial"
  rm -rf "$wheels"; mv "$wheels.partial" "$wheels"
fi
"$python" -m pip install --quiet "$wheels"/llama_cpp_python-"$version"-*.whl

"$here/build-llama-runtime.sh" --version "$version" --runtime "$runtime" --cache "$cache" \
  --dest "$prefix/lib/ai-appliance/llama-runtime/$runtime"
