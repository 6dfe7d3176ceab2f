"""Pod manifests for the Kubernetes orchestrator: a pure render, golden-tested.

Servers with an image run it as PID 1 (STDIO servers with `stdin: true`, reached by attach).
Package and command servers run in a runner image that only keeps the pod alive; mcpd execs
the server inside it. Runner images keep their entrypoint: we set `args`, never `command`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpctl.controllers.workload import Workload
from mcpctl.models.server import Source, Transport

MANAGED_BY = "app.kubernetes.io/managed-by"
SERVER_LABEL = "mcpctl.io/server"
REPLICA_LABEL = "mcpctl.io/replica"
SPEC_HASH_ANNOTATION = "mcpctl.io/spec-hash"
CONTAINER = "server"
SCRATCH = "/tmp"
KEEP_ALIVE = ["sleep", "infinity"]


@dataclass(frozen=True)
class PodOptions:
    namespace: str = "mcpctl-servers"
    runner_image: str = "ghcr.io/mcpctl/runner:0.1.0"
    node_selector: dict[str, str] = field(default_factory=dict)
    default_limits: dict[str, str] = field(
        default_factory=lambda: {"cpu": "500m", "memory": "512Mi"}
    )
    default_requests: dict[str, str] = field(
        default_factory=lambda: {"cpu": "50m", "memory": "64Mi"}
    )
    run_as_user: int = 10001


@dataclass(frozen=True)
class PodEnv:
    """Env as Kubernetes sees it: plain values, and secretKeyRefs to Secrets in the namespace."""

    values: dict[str, str] = field(default_factory=dict)
    secret_refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # var -> (secret, key)


def uses_exec(workload: Workload) -> bool:
    """Package and command servers are exec'd into a runner pod; images run as PID 1."""
    return workload.source in (Source.PACKAGE, Source.COMMAND)


def labels(workload: Workload) -> dict[str, str]:
    return {
        MANAGED_BY: "mcpd",
        SERVER_LABEL: workload.server,
        REPLICA_LABEL: str(workload.replica),
    }


def render_pod(
    workload: Workload,
    options: PodOptions,
    env: PodEnv,
    resources: dict[str, dict[str, str]] | None = None,
    extra_labels: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    stdio = workload.transport is Transport.STDIO
    exec_mode = uses_exec(workload)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": options.runner_image if exec_mode else workload.image,
        "env": _env(env),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "limits": {**options.default_limits, **(resources or {}).get("limits", {})},
            "requests": {**options.default_requests, **(resources or {}).get("requests", {})},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    if exec_mode:
        container["args"] = KEEP_ALIVE
    else:
        if workload.entrypoint:
            container["command"] = list(workload.entrypoint)
        if workload.argv:
            container["args"] = list(workload.argv)
    if stdio and not exec_mode:
        container["stdin"] = True
        container["stdinOnce"] = False
        container["tty"] = False
    if workload.port is not None and not stdio:
        container["ports"] = [{"name": "mcp", "containerPort": workload.port}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"mcp-{workload.server}-{workload.replica}-",
            "namespace": options.namespace,
            "labels": {**(extra_labels or {}), **labels(workload)},
            "annotations": {SPEC_HASH_ANNOTATION: workload.spec_hash},
        },
        "spec": {
            "restartPolicy": "Always",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 5,
            "nodeSelector": {**options.node_selector, **(node_selector or {})},
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": options.run_as_user,
                "runAsGroup": options.run_as_user,
                "fsGroup": options.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    }


def _env(env: PodEnv) -> list[dict[str, Any]]:
    # Writable caches on the scratch volume: the root filesystem is read-only.
    rendered: list[dict[str, Any]] = [
        {"name": "HOME", "value": SCRATCH},
        {"name": "npm_config_cache", "value": f"{SCRATCH}/.npm"},
        {"name": "UV_CACHE_DIR", "value": f"{SCRATCH}/.uv"},
    ]
    rendered += [{"name": k, "value": v} for k, v in env.values.items()]
    rendered += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for var, (name, key) in env.secret_refs.items()
    ]
    return rendered
