"""mcpd as a Kubernetes operator, on the real kube-apiserver of scripts/k8s/cluster.sh (its
test kubelet runs pods as local processes and serves exec/attach through the API server)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config
from mcp.client import Client

from mcpctl.orchestrators.kubernetes.orchestrator import KubernetesConfig
from tests.e2e.gateway import Gateway, start_gateway
from tests.helpers import k8s
from tests.helpers.jsonrpc import ACCEPT, initialize
from tests.helpers.mcpd import add_server, api, server_client, wait_instances
from tests.helpers.waiting import until
from tests.helpers.world import EVERYTHING

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG unset: `make test` starts the test cluster",
    ),
]

TIME = {"image": "mcp/time"}  # the test kubelet runs it as `uvx mcp-server-time` (PID 1, attach)


@pytest.fixture(scope="module")
def core() -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config())


@pytest.fixture(scope="module")
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    with k8s.namespace(core, f"mcp-e2e-{uuid.uuid4().hex[:6]}") as name:
        yield name


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, namespace: str) -> Iterator[Gateway]:
    settings = KubernetesConfig(
        namespace=namespace,
        runner_image="ghcr.io/mcpctl/runner:0.1.0",
        node_selector={"kubernetes.io/arch": "amd64"},
    )
    gateway = start_gateway(tmp_path_factory.mktemp("k8s"), f"k8s-{namespace}", kubernetes=settings)
    yield gateway
    gateway.stop()


def pods(core: client.CoreV1Api, namespace: str, server: str) -> list[Any]:
    found = core.list_namespaced_pod(namespace, label_selector=f"mcpctl.io/server={server}").items
    return [p for p in found if p.metadata.deletion_timestamp is None]


def connect(gateway: Gateway, server: str) -> AbstractAsyncContextManager[Client]:
    return server_client(gateway, server, timeout=120)


async def test_image_server_over_attach_heals_after_pod_deletion(
    operator: Gateway, core: client.CoreV1Api, namespace: str
) -> None:
    add_server(operator, "clock", TIME)
    first = wait_instances(operator, "clock", "RUNNING")[0]
    [pod] = pods(core, namespace, "clock")
    assert pod.metadata.name == first["pod"]
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "mcpd"
    assert pod.metadata.annotations["mcpctl.io/spec-hash"]
    assert pod.spec.containers[0].stdin is True
    assert pod.spec.security_context.run_as_non_root is True
    async with connect(operator, "clock") as session:
        result = await session.call_tool("get_current_time", {"timezone": "UTC"})
        assert "UTC" in result.content[0].text
        deleted_at = time.monotonic()
        core.delete_namespaced_pod(pod.metadata.name, namespace)
        wait_instances(operator, "clock", "RUNNING", exclude={pod.metadata.name})
        healed = await session.call_tool("get_current_time", {"timezone": "UTC"})
        heal_seconds = time.monotonic() - deleted_at
        assert "UTC" in healed.content[0].text
    print(f"\npod deleted -> first good tools/call: {heal_seconds:.2f} s")
    [replacement] = pods(core, namespace, "clock")
    assert replacement.metadata.name != pod.metadata.name


async def test_package_server_runs_in_a_runner_pod_over_exec(
    operator: Gateway, core: client.CoreV1Api, namespace: str
) -> None:
    add_server(operator, "everything", EVERYTHING)
    wait_instances(operator, "everything", "RUNNING")
    [pod] = pods(core, namespace, "everything")
    container = pod.spec.containers[0]
    assert container.image == "ghcr.io/mcpctl/runner:0.1.0"
    assert container.command is None and container.args == ["sleep", "infinity"]
    assert pod.spec.node_selector == {"kubernetes.io/arch": "amd64"}
    async with connect(operator, "everything") as session:
        echoed = await session.call_tool("echo", {"message": "over exec"})
        assert echoed.content[0].text == "Echo: over exec"


def test_crash_loop_is_an_error_and_others_are_unaffected(
    operator: Gateway, core: client.CoreV1Api, namespace: str
) -> None:
    spec = {"image": "busybox", "command": "sh", "args": ["-c", "echo boom >&2; exit 1"]}
    add_server(operator, "broken", spec)
    error = wait_instances(operator, "broken", "ERROR")[0]
    assert any(
        word in error["lastError"]
        for word in ("CrashLoopBackOff", "exited with code 1", "container restarted")
    ), error
    missing = {"image": "registry.invalid/nothing:1"}
    add_server(operator, "unpullable", missing)
    pull = wait_instances(operator, "unpullable", "ERROR")[0]
    assert "ImagePull" in pull["lastError"] or "ErrImagePull" in pull["lastError"]
    assert wait_instances(operator, "clock", "RUNNING")


def test_scale_roll_and_delete(operator: Gateway, core: client.CoreV1Api, namespace: str) -> None:
    doc = api(operator, "GET", "/servers/clock").json()
    doc["spec"]["replicas"] = 2
    assert api(operator, "PUT", "/servers/clock", json=doc).status_code == 200
    wait_instances(operator, "clock", "RUNNING", count=2)
    assert len(pods(core, namespace, "clock")) == 2
    doc["spec"]["replicas"] = 1
    api(operator, "PUT", "/servers/clock", json=doc)
    until(lambda: len(pods(core, namespace, "clock")) == 1, timeout=60, interval=0.2)
    before = pods(core, namespace, "clock")[0]
    doc["spec"]["env"] = [{"name": "ROLLED", "value": "1"}]
    api(operator, "PUT", "/servers/clock", json=doc)
    wait_instances(operator, "clock", "RUNNING", exclude={before.metadata.name})
    [after] = pods(core, namespace, "clock")
    assert (
        after.metadata.annotations["mcpctl.io/spec-hash"]
        != before.metadata.annotations["mcpctl.io/spec-hash"]
    )
    for name in ("broken", "unpullable"):
        assert api(operator, "DELETE", f"/servers/{name}").status_code == 204
    until(
        lambda: not pods(core, namespace, "broken") and not pods(core, namespace, "unpullable"),
        timeout=60,
        interval=0.2,
    )


def test_restarted_mcpd_adopts_pods_without_duplicates(
    operator: Gateway, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    before = {
        s: sorted(p.metadata.name for p in pods(core, namespace, s))
        for s in ("clock", "everything")
    }
    operator.stop(dispose=False)
    settings = KubernetesConfig(namespace=namespace, runner_image="ghcr.io/mcpctl/runner:0.1.0")
    again = start_gateway(
        tmp_path,
        f"k8s-again-{namespace}",
        kubernetes=settings,
        database=operator.database,
        key=operator.key,
    )
    try:
        wait_instances(again, "clock", "RUNNING")
        wait_instances(again, "everything", "RUNNING")
        after = {
            s: sorted(p.metadata.name for p in pods(core, namespace, s))
            for s in ("clock", "everything")
        }
        assert after == before
        response = httpx.post(
            f"{again.url}/mcp/servers/everything",
            headers={**again.headers, **ACCEPT},
            json=initialize(client="t", request_id=1),
            timeout=60,
        )
        assert response.status_code == 200
    finally:
        again.stop()


def test_mcpd_refuses_another_context(
    tmp_path: Path, namespace: str, core: client.CoreV1Api
) -> None:
    env = {
        **os.environ,
        "MCPD_ORCHESTRATOR": "kubernetes",
        "MCPD_K8S_CONTEXT": "production",
        "MCPD_K8S_NAMESPACE": namespace,
        "MCPD_DATA_DIR": str(tmp_path),
        "MCPD_PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mcpctl.daemon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "mcpd: kubeconfig context is 'mcpctl-test', but MCPD_K8S_CONTEXT is 'production': refusing to act"
    )
    assert not (tmp_path / "mcpd.db").exists()
