# syntax=docker/dockerfile:1
# The runner image for package (npx/uvx) and command servers. mcpd creates runner pods with
# `args: ["sleep", "infinity"]` and keeps the image's entrypoint, then execs the server inside
# (`npx -y PKG ...`, `uvx PKG ...` or the command). So the entrypoint is an init that runs its
# arguments (tini: it also reaps the exec'd servers' orphans), and the default CMD is the same
# keep-alive. Build:
#   docker build -f docker/runner.Dockerfile -t ghcr.io/mcpctl/runner:0.1.0 docker
# Pods run it as uid 10001 with a read-only root filesystem; mcpd sets HOME=/tmp,
# npm_config_cache=/tmp/.npm and UV_CACHE_DIR=/tmp/.uv (an emptyDir) for every server.
ARG NODE_IMAGE=node:22-bookworm-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${NODE_IMAGE}
RUN apt-get update \
    && apt-get install --yes --no-install-recommends ca-certificates python3 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 mcp \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin mcp
COPY --from=uv /uv /uvx /usr/local/bin/
ENV HOME=/tmp \
    npm_config_cache=/tmp/.npm \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    UV_CACHE_DIR=/tmp/.uv \
    UV_TOOL_DIR=/tmp/.uv-tools \
    UV_PYTHON_INSTALL_DIR=/tmp/.uv-python \
    UV_NO_PROGRESS=1
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sleep", "infinity"]
