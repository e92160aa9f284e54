# Ringleader developer entry points. `make test` is what CI runs (.ci/run): it sets
# everything up itself on a fresh machine (virtualenv, Python deps, dnsmasq) and runs
# lint, type checks and every test, unit and integration. The Kubernetes tests build
# kube-apiserver and etcd from Go modules on first use (cached; see e2e/README.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: all test lint typecheck unit demo bench bench-native ring-table system-deps k8s-bins otelcol-bins venv clean \
	cargo native rust-check

all: test

$(STAMP): pyproject.toml | cargo
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# The native data path (dataplane/native, a Rust crate built with PyO3): `pip install` builds it into
# dataplane._native through setuptools-rust (see dataplane/native/README.md). Cargo's build output is cached
# outside the repo (the registry is cargo's own, ~/.cargo/registry); cargo locks the target dir, so concurrent
# builds serialise. `native` rebuilds the extension in place when a Rust source changed.
RINGLEADER_CACHE ?= $(HOME)/.cache/ringleader
export CARGO_TARGET_DIR ?= $(RINGLEADER_CACHE)/cargo/target
CRATE        := dataplane/native
CRATE_SRC    := $(CRATE)/Cargo.toml $(CRATE)/Cargo.lock $(wildcard $(CRATE)/src/*.rs)
NATIVE_STAMP := $(VENV)/.native-$(shell cat $(CRATE_SRC) 2>/dev/null | cksum | cut -d' ' -f1)

cargo:
	@command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: the native data path (dataplane/native) needs Rust >= 1.80 with clippy and rustfmt; install it with rustup (https://rustup.rs): curl https://sh.rustup.rs -sSf | sh -s -- -y --component clippy,rustfmt"; exit 1; }
	@cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 || { echo "cargo's clippy or rustfmt is missing: rustup component add clippy rustfmt"; exit 1; }

$(NATIVE_STAMP): $(STAMP) $(CRATE_SRC) | cargo
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.native-* && touch $@

native: $(NATIVE_STAMP)

# cargo test, clippy (core alone, and with the Python binding) and rustfmt, as issue 10 asks.
rust-check: venv cargo
	cd $(CRATE) && cargo fmt --check
	cd $(CRATE) && cargo clippy --locked --all-targets -- -D warnings
	cd $(CRATE) && PYO3_PYTHON=$(abspath $(BIN)/python) cargo clippy --locked --features python -- -D warnings
	cd $(CRATE) && cargo test --locked

# System packages the tests drive for real: dnsmasq (DNS resolver tests), iproute2 (network
# namespaces for the Kubernetes live tests), openssl (envtest service-account keys).
SYSTEM_PACKAGES := dnsmasq:dnsmasq-base ip:iproute2 openssl:openssl
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

# kube-apiserver + etcd for the envtest, built once from the Go module proxy and cached
# outside the repo (~/.cache/ringleader); a no-op when the cache is warm.
k8s-bins: system-deps
	bash e2e/build_k8s.sh

# The upstream OpenTelemetry Collector (v0.161, loadbalancing exporter included) and telemetrygen, built
# once from Go modules and cached like k8s-bins: the side-by-side tests compare Ringleader against them.
otelcol-bins: system-deps
	bash e2e/build_otelcol.sh

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

test: venv native system-deps lint typecheck rust-check k8s-bins otelcol-bins
	$(BIN)/python -m pytest

unit: venv native
	$(BIN)/python -m pytest -m "not slow"

demo: venv
	$(BIN)/python -m e2e.demo

bench: venv
	$(BIN)/python -m e2e.bench

bench-native: native
	$(BIN)/python -m e2e.bench_native

ring-table: venv
	$(BIN)/python -m e2e.ring_table

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info dataplane/_native*.so
