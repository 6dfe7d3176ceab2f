"""Pod rendering is pure: compared with golden files (regenerate with MCPCTL_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl.controllers.manifests import PodEnv, PodOptions, render_pod
from mcpctl.controllers.workload import render
from mcpctl.models.server import ServerSpec

GOLDEN = Path(__file__).with_name("golden")
OPTIONS = PodOptions(
    namespace="mcpctl-servers",
    runner_image="ghcr.io/mcpctl/runner:0.1.0",
    node_selector={"kubernetes.io/arch": "amd64"},
)

CASES: dict[str, dict[str, Any]] = {
    "image-stdio": {
        "image": "mcp/time",
        "env": [
            {"name": "TZ", "value": "UTC"},
            {"name": "TOKEN", "secretRef": {"name": "creds", "key": "token"}},
        ],
        "labels": {"team": "platform"},
        "resources": {"limits": {"memory": "256Mi"}},
    },
    "package-node": {
        "package": "@modelcontextprotocol/server-everything",
        "runtime": "node",
        "args": ["stdio"],
        "nodeSelector": {"pool": "mcp"},
    },
    "image-http": {
        "image": "ghcr.io/acme/mcp:1.2",
        "command": "serve",
        "args": ["--port", "8080"],
        "transport": "streamable-http",
        "port": 8080,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_matches_golden(case: str) -> None:
    spec = ServerSpec.model_validate(CASES[case])
    workload = render(case, 1, spec, None)
    pod = render_pod(
        workload,
        OPTIONS,
        PodEnv(workload.env, workload.secret_refs),
        resources=workload.resources,
        extra_labels=workload.labels,
        node_selector=workload.node_selector,
    )
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("MCPCTL_UPDATE_GOLDEN"):
        path.write_text(yaml.safe_dump(pod, sort_keys=True))
    assert pod == yaml.safe_load(path.read_text())


def test_hardening_and_labels() -> None:
    workload = render("srv", 0, ServerSpec(image="mcp/time"), None)
    pod = render_pod(workload, OPTIONS, PodEnv())
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["stdin"] is True and "command" not in container
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "mcpd",
        "mcpctl.io/server": "srv",
        "mcpctl.io/replica": "0",
    }
    assert pod["metadata"]["annotations"]["mcpctl.io/spec-hash"] == workload.spec_hash
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_runner_pods_keep_their_entrypoint_and_secrets_stay_references() -> None:
    spec = ServerSpec.model_validate(
        {
            "package": "mcp-server-time",
            "runtime": "python",
            "env": [{"name": "K", "secretRef": {"name": "s", "key": "k"}}],
        }
    )
    workload = render("t", 0, spec, None)
    container = render_pod(workload, OPTIONS, PodEnv(workload.env, workload.secret_refs))["spec"][
        "containers"
    ][0]
    assert "command" not in container and container["args"] == ["sleep", "infinity"]
    assert container["image"] == "ghcr.io/mcpctl/runner:0.1.0"
    assert {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}} in container[
        "env"
    ]
    assert "stdin" not in container  # the server is exec'd, with its own stdin
