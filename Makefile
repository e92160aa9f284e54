# Ringleader developer entry points. `make test` is what CI runs (.ci/run): it sets
# everything up itself on a fresh machine (virtualenv, Python deps, dnsmasq) and runs
# lint, type checks and every test, unit and integration. The Kubernetes tests build
# kube-apiserver and etcd from Go modules on first use (cached; see e2e/README.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: all test lint typecheck unit demo bench ring-table system-deps k8s-bins otelcol-bins venv clean image manifests helm promtool delivery-tools

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

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

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

# helm, promtool and the image, built once and cached (a cold build takes ~20 min on 2 cores, mostly promtool).
delivery-tools: system-deps
	bash e2e/build_tool.sh helm >/dev/null
	bash e2e/build_tool.sh promtool >/dev/null
	bash e2e/build_image.sh >/dev/null

test: venv system-deps lint typecheck k8s-bins otelcol-bins delivery-tools
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest -m "not slow"

demo: venv
	$(BIN)/python -m e2e.demo

bench: venv
	$(BIN)/python -m e2e.bench

ring-table: venv
	$(BIN)/python -m e2e.ring_table

# Delivery (docs/install.md). `image` builds the Dockerfile without Docker (buildah, a Debian-built base) into
# a docker-archive under the cache and prints its size; `manifests` regenerates deploy/install.yaml and the
# chart's copies of crds/ and deploy/operator-rbac.yaml; `helm`/`promtool` build the tools (cached) and print
# their paths.
image:
	bash e2e/build_image.sh

manifests: venv
	$(BIN)/python -m e2e.manifests

helm:
	@bash e2e/build_tool.sh helm

promtool:
	@bash e2e/build_tool.sh promtool

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
