# syntax=docker/dockerfile:1.7
# One image, two entrypoints: `mailferry-operator` (the Deployment) and `mailferry-worker` (the Jobs).
# Build:  docker build -t ghcr.io/mailferry/mailferry:dev .
# The base is pinned to an exact patch release and by digest (the multi-arch index: amd64 and arm64), so a
# rebuild of the same commit gets the same base. Renovate/Dependabot or a person bumps both together.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- build: install the package and its dependencies into a self-contained virtualenv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mailferry
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common/ common/
COPY operator/ operator/
COPY worker/ worker/
RUN /opt/mailferry/bin/pip install --no-cache-dir . \
 && /opt/mailferry/bin/python -m compileall -q /opt/mailferry/lib \
 && /opt/mailferry/bin/mailferry-operator --help >/dev/null \
 && /opt/mailferry/bin/mailferry-worker --help >/dev/null

# ---- runtime: no compiler, no pip cache, no source tree; runs as an unprivileged numeric user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mailferry" \
      org.opencontainers.image.description="Kubernetes operator that migrates email between providers" \
      org.opencontainers.image.source="https://github.com/mailferry/mailferry" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/mailferry/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MAILFERRY_LOG_FORMAT=json
COPY --from=build --chown=0:0 /opt/mailferry /opt/mailferry
# 65532 is the conventional "nonroot" uid/gid (distroless); the files stay owned by root, read-only for it.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes (the chart's liveness/readiness) are used instead.
# The Deployment runs `mailferry-operator`; Jobs override the command with ["mailferry-worker", "sync"].
CMD ["mailferry-operator"]
