# syntax=docker/dockerfile:1
# mcpd, the gateway + controllers. Build from the repository root:
#   docker build -f docker/mcpd.Dockerfile -t ghcr.io/mcpctl/mcpd:0.1.0 .
# (docker/mcpd.Dockerfile.dockerignore limits the context to pyproject.toml, README.md, mcpctl/.)
# The chart runs it as uid 10001 with a read-only root filesystem: Ray and Python write only
# below /tmp and MCPD_DATA_DIR (emptyDirs) and /dev/shm.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with mcpctl and its dependencies (all binary wheels)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mcpd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mcpctl ./mcpctl
RUN /opt/mcpd/bin/pip install --no-compile . \
    && /opt/mcpd/bin/pip uninstall --yes pip \
    && /opt/mcpd/bin/python -m compileall -q -j 0 /opt/mcpd/lib

# ---- final: the interpreter, the virtualenv, a non-root user; no pip, no compilers
FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel \
    && groupadd --gid 10001 mcpd \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/mcpd --no-create-home \
       --shell /usr/sbin/nologin mcpd \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/mcpd
COPY --from=build /opt/mcpd /opt/mcpd
ENV PATH=/opt/mcpd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MCPD_HOST=0.0.0.0 \
    MCPD_PORT=8420 \
    MCPD_DATA_DIR=/var/lib/mcpd \
    RAY_USAGE_STATS_ENABLED=0
USER 10001:10001
WORKDIR /var/lib/mcpd
EXPOSE 8420
ENTRYPOINT ["mcpd"]
