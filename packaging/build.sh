#!/usr/bin/env bash
# Builds the appliance's packages from a checkout: one staging tree, wrapped as a .deb
# (debhelper) and an .rpm (rpmbuild), so both carry identical files.
#
# usage: packaging/build.sh [--format deb|rpm|all] [--runtime cpu|cuda|cann] [--out DIR]
#                           [--version V] [--recipe-only] [--update-lock]
#
#   --runtime cpu   the core package `ai-appliance`: private venv at /usr/lib/ai-appliance/venv
#                   with the portable CPU llama.cpp runtime, units, config, man page
#   --runtime cuda  `ai-appliance-runtime-cuda`: the CUDA llama.cpp build beside the cpu one
#                   (needs nvcc and cuBLAS; fails with the missing piece named otherwise)
#   --runtime cann  `ai-appliance-runtime-cann`: the CANN build and the HwHiAiUser drop-in
#                   (needs the CANN toolkit's set_env.sh sourced)
#   --recipe-only   render and lint the recipe (debian/control, the .spec) without building
#   --update-lock   re-resolve pyproject.toml's dependencies into packaging/requirements.lock
#   --no-lint       skip lintian/rpmlint (quick local rebuilds; `make package` always lints)
#
# Offline once warm: Python wheels are kept in $AI_APPLIANCE_BUILD_CACHE/wheelhouse (default
# ~/.cache/ai-appliance) and the llama.cpp build in .../llama-runtime (build-llama-runtime.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
format="all" runtime="cpu" out="$root/dist" version="" recipe_only="" update_lock="" lint=1
while [ $# -gt 0 ]; do
  case "$1" in
    --format) format="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --recipe-only) recipe_only=1; shift ;;
    --update-lock) update_lock=1; shift ;;
    --no-lint) lint=""; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$format" in deb|rpm|all) ;; *) echo "build.sh: --format must be deb, rpm or all" >&2; exit 2 ;; esac
case "$runtime" in cpu|cuda|cann) ;; *) echo "build.sh: --runtime must be cpu, cuda or cann" >&2; exit 2 ;; esac

# The interpreter the packaged venv runs on: the distribution's Python of the version the
# wheels are built for (cp311). Its path is written into the venv, so it must be the target's.
PKG_PYTHON="${PKG_PYTHON:-/usr/bin/python3.11}"
PREFIX=/usr/lib/ai-appliance
VENV="$PREFIX/venv"
LLAMA_VERSION="$(sed -n 's/^LLAMA_CPP_PYTHON := *//p' "$root/Makefile")"
cache="${AI_APPLIANCE_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-appliance}"
wheelhouse="$cache/wheelhouse"
app_version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml")"
version="${version:-$app_version}"
deb_arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
maintainer="${PACKAGE_MAINTAINER:-AI Appliance maintainers <packaging@ai-appliance.example>}"
if [ "$runtime" = cpu ]; then package=ai-appliance; else package="ai-appliance-runtime-$runtime"; fi

step=0
stage() { step=$((step + 1)); echo ">> [package $step] $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

need() {  # need TOOL DEBIAN-PACKAGE
  command -v "$1" >/dev/null || die "'$1' is missing; install the Debian package $2 (make package-deps)"
}

if [ -n "$update_lock" ]; then
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  stage "resolving pyproject.toml's dependencies into packaging/requirements.lock"
  "$PKG_PYTHON" -m venv "$work/venv"
  # The bindings first, from the runtime cache: pip must never compile llama.cpp itself.
  "$work/venv/bin/pip" install --quiet "$cache"/llama-runtime/bindings-"$LLAMA_VERSION"/*.whl
  "$work/venv/bin/pip" install --quiet "$root"
  { sed -n '1,3p' "$here/requirements.lock"
    "$work/venv/bin/pip" freeze --all \
      | grep -v -i -E '^(pip|setuptools|wheel|ai-appliance|llama.cpp.python)[= @]'
  } >"$work/lock"
  mv "$work/lock" "$here/requirements.lock"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ai-appliance-package.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$work/tree"   # the staging tree: what lands under / on the target
mkdir -p "$tree"

render_debian() {  # the debian/ folder for $package into $1
  local dir="$1"
  mkdir -p "$dir/source"
  echo "3.0 (native)" >"$dir/source/format"
  cp "$here/debian/rules" "$dir/rules"
  cp "$here/debian/copyright" "$dir/copyright"
  local depends description
  if [ "$runtime" = cpu ]; then
    cp "$here/debian/ai-appliance.lintian-overrides" "$dir/ai-appliance.lintian-overrides"
    cp "$here/debian/ai-appliance.postrm" "$dir/ai-appliance.postrm"
    cp "$here/debian/ai-appliance.postinst" "$dir/ai-appliance.postinst"
    # shellcheck disable=SC2016  # debhelper substitution variables, not shell
    depends='python3.11, python3, systemd, acl, libgomp1, ${shlibs:Depends}, ${misc:Depends}'
    description="DeepSeek chat server for the office LAN (CPU runtime)
 Turns a server with an Ascend NPU, an NVIDIA GPU or only CPUs into a DeepSeek
 chat box: device detection, model store, llama.cpp workers with continuous
 batching, an OpenAI-compatible API with keys, an admin socket, the appliance
 command and a terminal console. Carries the portable llama.cpp CPU runtime
 (every CPU variant, self-tested at first start)."
  else
    cp "$here/debian/runtime.lintian-overrides" "$dir/$package.lintian-overrides"
    cp "$here/debian/runtime.postinst" "$dir/$package.postinst"
    cp "$here/debian/runtime.postrm" "$dir/$package.postrm"
    # shellcheck disable=SC2016  # debhelper substitution variables, not shell
    depends='ai-appliance (= ${binary:Version}), ${shlibs:Depends}, ${misc:Depends}'
    description="llama.cpp $runtime runtime for the AI appliance
 The llama.cpp libraries built for $runtime, beside the core package's CPU
 build; the appliance prefers them when the accelerator is present."
  fi
  cat >"$dir/control" <<EOF
Source: ai-appliance
Section: net
Priority: optional
Maintainer: $maintainer
Build-Depends: debhelper-compat (= 13)
Standards-Version: 4.6.2
Homepage: https://github.com/ai-appliance/ai-appliance
Rules-Requires-Root: no

Package: $package
Architecture: $deb_arch
Depends: $depends
Description: $description
EOF
  cat >"$dir/changelog" <<EOF
ai-appliance ($version) stable; urgency=medium

  * Package of ai-appliance $app_version built from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "a source tree").

 -- $maintainer  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")
EOF
}

render_spec() {  # the .spec for $package into $1
  sed -e "s|@NAME@|$package|g" -e "s|@VERSION@|${version//-/_}|g" \
      -e "s|@RUNTIME@|$runtime|g" -e "s|@PACKAGER@|$maintainer|g" \
      "$here/rpm/ai-appliance.spec.in" >"$1"
}

if [ -n "$recipe_only" ]; then
  stage "rendering the $package recipe (no build)"
  render_debian "$work/src/debian"
  (cd "$work/src" && dpkg-parsechangelog >/dev/null && dh_testdir)
  render_spec "$work/$package.spec"
  if command -v rpmspec >/dev/null; then rpmspec -P "$work/$package.spec" >/dev/null; fi
  if command -v rpmlint >/dev/null; then
    rpmlint -r "$here/rpm/spec.rpmlintrc" "$work/$package.spec"
  fi
  echo ">> recipe for $package renders and lints cleanly"
  exit 0
fi

# Accelerator toolchains first: a missing one must stop the build before any work is done.
case "$runtime" in
  cuda)
    # cuBLAS comes from the toolkit or, where it lacks it, NVIDIA's wheel of the same release
    # (build-llama-runtime.sh says which).
    command -v nvcc >/dev/null || export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
    command -v nvcc >/dev/null \
      || die "'nvcc' is missing; install NVIDIA's CUDA toolkit (cuda-toolkit, or nvidia-cuda-toolkit)"
    cuda_version="$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')" ;;
  cann)
    [ -n "${ASCEND_TOOLKIT_HOME:-}" ] \
      || die "the CANN runtime needs the CANN toolkit: source /usr/local/Ascend/ascend-toolkit/set_env.sh (or cann/set_env.sh) first" ;;
esac
[ "$format" = rpm ] || { need dpkg-buildpackage dpkg-dev; need dh debhelper; }
[ "$format" = deb ] || need rpmbuild rpm
[ -x "$PKG_PYTHON" ] || die "$PKG_PYTHON is missing; install python3.11 and python3.11-venv"

mkdir -p "$out"
venv="$tree$VENV"
stage "private venv at $VENV (built in the staging tree, relocated below) with $PKG_PYTHON"
"$PKG_PYTHON" -m venv "$venv"

pipx() { "$venv/bin/python" -m pip "$@"; }
stage "wheels: packaging/requirements.lock (wheelhouse $wheelhouse)"
mkdir -p "$wheelhouse"
if ! pipx download --quiet --no-index --find-links "$wheelhouse" -d "$work/probe" \
       -r "$here/requirements.lock" "setuptools>=69" wheel >/dev/null 2>&1; then
  echo "   filling the wheelhouse (needs the package index once)"
  pipx download --quiet -d "$wheelhouse" -r "$here/requirements.lock" "setuptools>=69" wheel
fi
pipx install --quiet --no-index --find-links "$wheelhouse" --no-deps -r "$here/requirements.lock"
if [ "$runtime" = cuda ] && ! pipx download --quiet --no-index --find-links "$wheelhouse" \
       --no-deps -d "$work/probe" "nvidia-cublas==$cuda_version.*" >/dev/null 2>&1; then
  # NVIDIA's cuBLAS wheel, for toolkits without cuBLAS (build-llama-runtime.sh uses it only then).
  echo "   adding nvidia-cublas $cuda_version to the wheelhouse (needs the package index once)"
  pipx download --quiet --no-deps -d "$wheelhouse" "nvidia-cublas==$cuda_version.*" \
    || echo "   (not downloadable: the toolkit must carry cuBLAS itself)"
fi

stage "llama.cpp $LLAMA_VERSION: bindings and the $runtime runtime (packaging/runtime/install-llama.sh)"
# Offline: the bindings' dependencies are in the lock, installed above.
PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheelhouse" AI_APPLIANCE_BUILD_CACHE="$cache/llama-runtime" \
  "$root/packaging/runtime/install-llama.sh" "$venv/bin/python" "$LLAMA_VERSION" "$runtime"

if [ "$runtime" = cpu ]; then
  stage "ai-appliance $app_version wheel into the venv"
  pipx wheel --quiet --no-deps --no-index --find-links "$wheelhouse" -w "$work/dist" "$root"
  pipx install --quiet --no-index --no-deps "$work"/dist/ai_appliance-*.whl
  pipx check >/dev/null || { pipx check >&2; die "the venv's dependencies do not fit together"; }
  # A package-managed tree: nobody pip-installs into it, so the installer itself goes.
  pipx uninstall --quiet --yes pip setuptools wheel 2>/dev/null || true
else
  # A runtime package carries its build folder only; the core package owns everything else.
  keep="$work/keep"
  mkdir -p "$keep"
  mv "$venv/lib/ai-appliance/llama-runtime/$runtime" "$keep/"
  rm -rf "$tree"; mkdir -p "$venv/lib/ai-appliance/llama-runtime"
  mv "$keep/$runtime" "$venv/lib/ai-appliance/llama-runtime/"
fi

stage "relocating the venv to $VENV, stripping native code, compileall"
# A venv names its own path in its scripts' #! lines, activate scripts and pyvenv.cfg; the
# staging prefix is replaced by the final one (dh-virtualenv does the same), then checked.
if [ "$runtime" = cpu ]; then
  grep -rlI --null -F "$tree" "$venv/bin" "$venv/pyvenv.cfg" | xargs -0 -r sed -i "s|$tree||g"
  rm -f "$venv"/bin/Activate.ps1 "$venv"/bin/activate.csh "$venv"/bin/activate.fish
  # pip records where each wheel came from (file:// paths of this machine): not shipped.
  find "$venv" -name direct_url.json -path '*.dist-info/*' -delete
  find "$venv" -name RECORD -path '*.dist-info/*' -exec sed -i '/direct_url.json/d' {} +
fi
find "$venv" -name '__pycache__' -type d -prune -exec rm -rf {} +
# Only the llama.cpp libraries built here are stripped: the wheels' libraries come stripped, and
# strip corrupts the ones auditwheel patched (numpy's OpenBLAS then fails to load with "ELF load
# command address/offset not page-aligned").
find "$venv/lib/ai-appliance/llama-runtime" -type f -name '*.so*' -print0 \
  | while IFS= read -r -d '' lib; do
      # NVIDIA's libraries (bundled by the CUDA build) ship as NVIDIA built them.
      case "$(basename "$lib")" in libcudart.*|libcublas*) continue ;; esac
      if file -b "$lib" | grep -q 'not stripped'; then strip --strip-unneeded "$lib"; fi
    done
# Library files need no execute bit: wheels set it on some modules without a #! line.
find "$venv/lib" -type f -perm /111 ! -name '*.so' ! -name '*.so.*' -print0 \
  | while IFS= read -r -d '' f; do
      if [ "$(head -c2 "$f")" != '#!' ]; then chmod a-x "$f"; fi
    done
if [ "$runtime" = cpu ]; then
  # The service cannot write __pycache__ under ProtectSystem=strict: compile now, with the
  # final paths recorded in the bytecode.
  "$venv/bin/python" -m compileall -q -j0 -s "$tree" -p / "$venv/lib" >/dev/null
fi
if leaks="$(grep -rlI -F "$tree" "$tree" | head -5)" && [ -n "$leaks" ]; then
  die "the staging path is still named in: $leaks"
fi

stage "staging tree: units, sysusers, tmpfiles, udev rules, config, docs"
if [ "$runtime" = cpu ]; then
  install -d "$tree/usr/bin"
  ln -s "../lib/ai-appliance/venv/bin/appliance" "$tree/usr/bin/appliance"
  install -D -m 0644 "$root/systemd/ai-appliance.service" "$tree/usr/lib/systemd/system/ai-appliance.service"
  install -D -m 0644 "$root/systemd/ai-appliance-firstboot.service" "$tree/usr/lib/systemd/system/ai-appliance-firstboot.service"
  install -D -m 0644 "$root/systemd/ai-appliance-rpc.service" "$tree/usr/lib/systemd/system/ai-appliance-rpc.service"
  install -D -m 0644 "$root/systemd/ai-appliance.sysusers" "$tree/usr/lib/sysusers.d/ai-appliance.conf"
  install -D -m 0644 "$root/systemd/ai-appliance.tmpfiles" "$tree/usr/lib/tmpfiles.d/ai-appliance.conf"
  install -D -m 0644 "$root/systemd/60-ai-appliance.rules" "$tree/usr/lib/udev/rules.d/60-ai-appliance.rules"
  install -D -m 0644 "$root/systemd/ai-appliance.preset" "$tree/usr/lib/systemd/system-preset/90-ai-appliance.preset"
  install -D -m 0644 "$here/config.toml" "$tree/etc/ai-appliance/config.toml"
  install -D -m 0644 "$here/appliance.1" "$tree/usr/share/man/man1/appliance.1"
  gzip -9n "$tree/usr/share/man/man1/appliance.1"
  install -D -m 0644 "$root/README.md" "$tree/usr/share/doc/ai-appliance/README.md"
  install -m 0644 "$here/debian/copyright" "$tree/usr/share/doc/ai-appliance/copyright"
  install -d "$tree/usr/share/doc/ai-appliance/guide"
  install -m 0644 "$root"/docs/*.md "$tree/usr/share/doc/ai-appliance/guide/"
  # The shipped hooks live in the venv (appliance.firmware_hooks.shipped); the event folders
  # link to them, so an administrator removes a link to turn one off.
  for link in boot.d/10-compatibility boot.d/20-ascend-health boot.d/30-nvidia-persistence \
              device-added.d/10-compatibility update.d/10-compatibility; do
    install -d "$tree/etc/ai-appliance/hooks.d/$(dirname "$link")"
    ln -s "$VENV/bin/appliance-hook-${link#*/[0-9][0-9]-}" "$tree/etc/ai-appliance/hooks.d/$link"
  done
else
  if [ "$runtime" = cann ]; then
    install -D -m 0644 "$root/systemd/ai-appliance.service.d/10-ascend.conf" \
      "$tree/usr/lib/systemd/system/ai-appliance.service.d/10-ascend.conf"
  fi
  if [ "$runtime" = cuda ]; then
    install -D -m 0644 "$root/systemd/ai-appliance.service.d/10-cuda.conf" \
      "$tree/usr/lib/systemd/system/ai-appliance.service.d/10-cuda.conf"
    # NVIDIA's EULA, under which the CUDA runtime and cuBLAS inside are redistributed
    # (Attachment A; the files unmodified, so never stripped above): the toolkit's copy, or
    # the one in NVIDIA's cuBLAS wheel.
    eula="$(nvcc --dryrun -c /dev/null -x cu -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -1)/../EULA.txt"
    if [ ! -f "$eula" ]; then
      wheel="$(find "$wheelhouse" -maxdepth 1 -name "nvidia_cublas-$cuda_version.*.whl" | sort | tail -1)"
      [ -n "$wheel" ] || die "NVIDIA's EULA is neither in the toolkit nor in a cuBLAS wheel"
      python3 -m zipfile -e "$wheel" "$work/cublas-wheel"
      eula="$(find "$work/cublas-wheel" -path '*.dist-info/licenses/License.txt' | head -1)"
    fi
    install -D -m 0644 "$eula" "$tree/usr/share/doc/$package/NVIDIA-CUDA-EULA.txt"
  fi
  install -d "$tree/usr/share/doc/$package"
fi

file_version="$version"
if [ "$format" != rpm ]; then
  stage "wrapping the .deb (debhelper, lintian)"
  src="$work/src"
  mkdir -p "$src"
  render_debian "$src/debian"
  (cd "$src" && STAGE="$tree" PKG="$package" dpkg-buildpackage -b -uc -us --no-sign \
     >"$work/deb.log" 2>&1) || { tail -40 "$work/deb.log" >&2; die "dpkg-buildpackage failed"; }
  deb="${package}_${file_version}_${deb_arch}.deb"
  mv "$work/$deb" "$out/$deb"
  if [ -n "$lint" ]; then
    need lintian lintian
    lintian --fail-on error,warning --suppress-tags bad-distribution-in-changes-file \
      "$out/$deb" || die "lintian reported errors or warnings on $deb"
  fi
  echo "   $out/$deb ($(du -h "$out/$deb" | cut -f1))"
fi
if [ "$format" != deb ]; then
  stage "wrapping the .rpm (rpmbuild, rpmlint)"
  render_spec "$work/$package.spec"
  rpmbuild -bb --quiet --define "_topdir $work/rpm" --define "stage $tree" \
    --define "_build_id_links none" "$work/$package.spec" >"$work/rpm.log" 2>&1 \
    || { tail -40 "$work/rpm.log" >&2; die "rpmbuild failed"; }
  rpm_file="$(find "$work/rpm/RPMS" -name '*.rpm' | head -1)"
  mv "$rpm_file" "$out/"
  rpm_file="$out/$(basename "$rpm_file")"
  if [ -n "$lint" ]; then
    need rpmlint rpmlint
    rpmlintrc="$here/rpm/ai-appliance.rpmlintrc"
    if [ "$runtime" != cpu ]; then  # the runtime filters, plus this runtime's own if any
      rpmlintrc="$work/runtime.rpmlintrc"
      cat "$here/rpm/runtime.rpmlintrc" >"$rpmlintrc"
      if [ -f "$here/rpm/runtime-$runtime.rpmlintrc" ]; then
        cat "$here/rpm/runtime-$runtime.rpmlintrc" >>"$rpmlintrc"
      fi
    fi
    rpmlint -r "$rpmlintrc" "$rpm_file" \
      || die "rpmlint reported errors or unfiltered warnings on $(basename "$rpm_file")"
  fi
  echo "   $rpm_file ($(du -h "$rpm_file" | cut -f1))"
fi
echo ">> done: $package $version in $out"
