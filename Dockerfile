# Ringleader: one image for both console scripts, `ringleader-dataplane` (tier 1) and
# `ringleader-operator` (the operator that deploys it).
#
#   docker build -t ringleader:0.1.0 .                        # from the public python slim image
#   make image                                                # here: a Debian-built base, no Docker
#
# PYTHON_BASE is any image with python3 (>= 3.11) and its venv module; build and final stage use
# the same base, so the virtualenv's interpreter link stays valid. The final stage holds the base
# plus /opt/ringleader (a virtualenv without pip or setuptools): no compiler, no package manager
# of ours, runs as uid/gid 65532 and never writes to its root filesystem.
ARG PYTHON_BASE=python:3.11-slim-bookworm

FROM ${PYTHON_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/ringleader
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dataplane ./dataplane
COPY operator ./operator
RUN /opt/ringleader/bin/python -m pip install . \
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
