# Ringleader developer entry points. `make test` is what CI runs (.ci/run): it sets
# everything up itself on a fresh machine (virtualenv, Python deps, dnsmasq) and runs
# lint, type checks and every test, unit and integration. The Kubernetes tests build
# kube-apiserver and etcd from Go modules on first use (cached; see e2e/README.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: all test lint typecheck unit demo bench bench-native ring-table system-deps k8s-bins otelcol-bins lab-bins \
	lab-up lab-down e2e venv clean image wheel manifests helm promtool delivery-tools cargo native rust-check

all: test

$(STAMP): pyproject.toml | cargo
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	PYO3_PYTHON=$(PYO3_PYTHON) $(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# The native data path (dataplane/native, a Rust crate built with PyO3): `pip install` builds it into
# dataplane._native through setuptools-rust (see dataplane/native/README.md). Cargo's build output is cached
# outside the repo (the registry is cargo's own, ~/.cargo/registry); cargo locks the target dir, so concurrent
# builds serialise. `native` rebuilds the extension in place when a Rust source changed.
RINGLEADER_CACHE ?= $(HOME)/.cache/ringleader
export CARGO_TARGET_DIR ?= $(RINGLEADER_CACHE)/cargo/target
CRATE        := dataplane/native
CRATE_SRC    := $(CRATE)/Cargo.toml $(CRATE)/Cargo.lock $(shell find $(CRATE)/src -name '*.rs' 2>/dev/null | LC_ALL=C sort)
RUST_VERSION := $(shell sed -n 's/^rust-version = "\(.*\)"$$/\1/p' $(CRATE)/Cargo.toml)
NATIVE_STAMP := $(VENV)/.native-$(shell cat $(CRATE_SRC) 2>/dev/null | cksum | cut -d' ' -f1)
# The interpreter itself (not the venv's link to it): pyo3 rebuilds when PYO3_PYTHON changes, and
# dataplane/native/build-wheel.sh (the images' wheel) names the same one, so the two share cargo's output.
PYO3_PYTHON  := $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys._base_executable))' 2>/dev/null)

cargo:
	@command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: the native data path (dataplane/native) needs Rust >= $(RUST_VERSION) with clippy and rustfmt; install it with rustup (https://rustup.rs): curl https://sh.rustup.rs -sSf | sh -s -- -y --component clippy,rustfmt"; exit 1; }
	@have=$$(rustc -V | cut -d' ' -f2); [ "$$(printf '%s\n%s\n' $(RUST_VERSION) $${have%%-*} | sort -V | head -n1)" = $(RUST_VERSION) ] || { echo "rustc $$have is older than $(RUST_VERSION), the crate's rust-version: rustup update stable (https://rustup.rs)"; exit 1; }
	@cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 || { echo "cargo's clippy or rustfmt is missing: rustup component add clippy rustfmt"; exit 1; }

$(NATIVE_STAMP): $(STAMP) $(CRATE_SRC) | cargo
	PYO3_PYTHON=$(PYO3_PYTHON) $(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.native-* && touch $@

native: $(NATIVE_STAMP)

# cargo test, clippy (core alone, and with the Python binding) and rustfmt, as issue 10 asks.
rust-check: venv cargo
	cd $(CRATE) && cargo fmt --check
	cd $(CRATE) && cargo clippy --locked --all-targets -- -D warnings
	cd $(CRATE) && PYO3_PYTHON=$(abspath $(BIN)/python) cargo clippy --locked --features python -- -D warnings
	cd $(CRATE) && cargo test --locked

# System packages the tests drive for real: dnsmasq (DNS resolver tests), iproute2 (network
# namespaces for the Kubernetes live tests), openssl (envtest service-account keys); debootstrap, umoci,
# skopeo, buildah and runc build and run the container image (tests/test_image.py).
SYSTEM_PACKAGES := dnsmasq:dnsmasq-base ip:iproute2 openssl:openssl \
	debootstrap:debootstrap umoci:umoci skopeo:skopeo buildah:buildah runc:runc
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$cmd >/dev/null 2>&1 || test -x /usr/sbin/$$cmd || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing system packages: run 'sudo apt-get install$$missing'"; exit 1; \
		fi; \
	fi
	@command -v go >/dev/null 2>&1 || { echo "Go is missing: the Kubernetes tests build kube-apiserver and etcd from Go modules; install Go >= 1.24"; exit 1; }

# kube-apiserver + etcd (+ kube-controller-manager for the operator tests) for the envtest, built once from the Go module proxy and cached
# outside the repo (~/.cache/ringleader); a no-op when the cache is warm.
k8s-bins: system-deps
	bash e2e/build_k8s.sh --with-controller-manager

# The upstream OpenTelemetry Collector (v0.161, loadbalancing exporter included) and telemetrygen, built
# once from Go modules and cached like k8s-bins: the side-by-side tests compare Ringleader against them.
otelcol-bins: system-deps
	bash e2e/build_otelcol.sh

# The lab (e2e/lab.py, docs/lab.md): a real one-node Kubernetes cluster with real containers. lab-bins
# installs its Debian packages and builds (once, cached) the node binaries, containerd and the images;
# it needs root, as the lab itself does (without root the lab tests are skipped and say so).
lab-bins: system-deps otelcol-bins
	@if [ "$$(id -u)" = 0 ]; then \
		bash e2e/lab_deps.sh && bash e2e/build_k8s.sh --with-node && bash e2e/build_containerd.sh && \
		bash e2e/build_images.sh pause otelcol telemetrygen loadgen && bash e2e/build_image.sh >/dev/null && \
		bash e2e/build_tool.sh helm >/dev/null; \
	else echo "lab-bins: not root, so no lab: the tests that need it will be skipped"; fi

lab-up: venv lab-bins
	$(BIN)/python -m e2e.lab up

lab-down: venv
	$(BIN)/python -m e2e.lab down

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

# helm, promtool and the image, built once and cached (cold: a few minutes each; promtool is built without service discovery).
delivery-tools: system-deps
	bash e2e/build_tool.sh helm >/dev/null
	bash e2e/build_tool.sh promtool >/dev/null
	bash e2e/build_image.sh >/dev/null

test: venv native system-deps lint typecheck rust-check k8s-bins otelcol-bins delivery-tools lab-bins
	$(BIN)/python -m pytest

# Scenarios 2 and 5 of the lab (tier 2 scaled and rolled under load, Ringleader beside upstream): ~5 min warm.
e2e: venv native k8s-bins otelcol-bins delivery-tools lab-bins
	$(BIN)/python -m pytest -m e2e

unit: venv native
	$(BIN)/python -m pytest -m "not slow"

# The main job on the lab's cluster (root); `make demo LOCAL=1` runs the loopback demo instead.
demo: venv
ifeq ($(LOCAL),1)
	$(BIN)/python -m e2e.demo
else
	$(MAKE) lab-bins
	$(BIN)/python -m e2e.lab_demo
endif

# Ringleader side by side with the upstream collector and the previous Python data path (e2e/bench.py,
# docs/benchmarks.md): ~9 min warm; BENCH_ARGS=--quick for a ~1 min check, --baseline-ref REF, --shapes ...
BENCH_ARGS ?=
bench: venv native otelcol-bins
	$(BIN)/python -m e2e.bench $(BENCH_ARGS)

bench-native: native
	$(BIN)/python -m e2e.bench_native

ring-table: venv
	$(BIN)/python -m e2e.ring_table

# Delivery (docs/install.md). `image` builds the Dockerfile without Docker (buildah, a Debian-built base, the
# native extension as a wheel built with the machine's cargo) into a docker-archive under the cache and prints
# its size; `manifests` regenerates deploy/install.yaml and the chart's copies of crds/ and
# operator/ringleader_operator/rbac_rules.yaml; `helm`/`promtool` build the tools (cached) and print their paths.
image:
	bash e2e/build_image.sh

# Ringleader's wheel with the native extension (what the images install; dataplane/native/README.md), into dist/.
wheel: cargo
	bash dataplane/native/build-wheel.sh dist

manifests: venv
	$(BIN)/python -m e2e.manifests

helm:
	@bash e2e/build_tool.sh helm

promtool:
	@bash e2e/build_tool.sh promtool

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info dataplane/_native*.so
