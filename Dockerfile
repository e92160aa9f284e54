# Ringleader: one image for both console scripts, `ringleader-dataplane` (tier 1) and
# `ringleader-operator` (the operator that deploys it).
#
#   docker build -t ringleader:0.1.0 .                        # official rust and python slim images
#   make image                                                # here: a Debian-built base, no Docker
#
# Three stages:
# 1. native-wheel (the official Rust image, pinned): dataplane/native/build-wheel.sh builds Ringleader's
#    wheel with the native data path (the Rust extension dataplane._native) into /wheels. Its Debian release
#    is the runtime base's (bookworm, glibc 2.36), so the extension's glibc needs are met (the script checks
#    them and tags the wheel manylinux_2_<N>). e2e/build_image.sh replaces this stage with
#    `--build-context native-wheel=DIR`, DIR/wheels holding the wheel the same script built with the
#    machine's own toolchain.
# 2. build (PYTHON_BASE): a virtualenv in /opt/ringleader with that wheel and its dependencies, then
#    without pip or setuptools.
# 3. the final stage: PYTHON_BASE plus /opt/ringleader. No compiler, no Rust toolchain, no package manager
#    of ours; runs as uid/gid 65532 and never writes to its root filesystem.
#
# PYTHON_BASE is any image with python3 (>= 3.11: the extension is abi3 for CPython >= 3.11) and its venv
# module, on glibc >= the wheel's manylinux tag; build and final stage use the same base, so the
# virtualenv's interpreter link stays valid. RUST_IMAGE's Debian release should match PYTHON_BASE's.
ARG PYTHON_BASE=python:3.11-slim-bookworm
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm

FROM ${RUST_IMAGE} AS native-wheel
# python3 (3.11 on bookworm) and venv drive setuptools-rust; the image has cargo, gcc and binutils.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dataplane ./dataplane
COPY operator ./operator
RUN bash dataplane/native/build-wheel.sh /wheels

FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/ringleader
COPY --from=native-wheel /wheels /wheels
# --only-binary: a wheel for every dependency too; nothing in this stage compiles.
RUN /opt/ringleader/bin/python -m pip install --only-binary=:all: /wheels/ringleader-*.whl \
 && /opt/ringleader/bin/python -c "import dataplane._native" \
 && /opt/ringleader/bin/python -m compileall -q /opt/ringleader/lib \
 && /opt/ringleader/bin/python -m pip uninstall -y -q pip setuptools \
 && rm -f /opt/ringleader/bin/pip* /opt/ringleader/bin/activate* /opt/ringleader/bin/Activate.ps1

FROM ${PYTHON_BASE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/ringleader-dev/ringleader
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ringleader" \
      org.opencontainers.image.description="Trace-aware OTLP load balancer (tier 1) and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/ringleader /opt/ringleader
# A passwd/group entry for the runtime uid: libraries that look the user up (getpwuid) get an answer
# instead of KeyError. No home directory, no login shell.
RUN groupadd --system --gid 65532 ringleader \
 && useradd --system --no-log-init --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ringleader
ENV PATH=/opt/ringleader/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The conventional "nonroot" uid/gid; numeric, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
CMD ["ringleader-dataplane", "--help"]
