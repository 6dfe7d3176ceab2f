"""The shared pod watch on the real API server: relists after 410 Gone, misses nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from mcpctl.orchestrators.kubernetes.watcher import PodWatcher
from tests.helpers import k8s

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG unset: `make test` starts the test cluster",
    ),
]
LABEL = "app.kubernetes.io/managed-by=mcpd"


@pytest.fixture
def core() -> client.CoreV1Api:
    """A client per test: these tests restart the apiserver under their connections."""
    return client.CoreV1Api(config.new_client_from_config())


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    with k8s.namespace(core, f"watch-{uuid.uuid4().hex[:6]}") as name:
        yield name


def pod(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "mcpd"}},
        "spec": {"containers": [{"name": "server", "image": "pause"}]},
    }


def compact_etcd() -> None:
    """Compact the test cluster's etcd to now, so older resourceVersions are gone (410)."""
    etcd = f"http://127.0.0.1:{os.environ.get('MCPCTL_K8S_ETCD_PORT', '12379')}"
    answer = httpx.post(f"{etcd}/v3/kv/range", json={"key": "AA==", "limit": 1}).json()
    revision = answer["header"]["revision"]
    httpx.post(
        f"{etcd}/v3/kv/compaction", json={"revision": revision, "physical": True}
    ).raise_for_status()


def restart_api_server() -> None:
    """Stop and start the test control plane, keeping etcd's data (a new apiserver, same state)."""
    script = Path(__file__).parents[2] / "scripts" / "k8s" / "cluster.sh"
    subprocess.run([str(script), "down"], check=True, capture_output=True, timeout=120)
    env = {**os.environ, "MCPCTL_K8S_KEEP_DATA": "1"}
    subprocess.run([str(script), "up"], check=True, capture_output=True, timeout=600, env=env)


async def test_a_watch_survives_an_api_server_restart(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("first"))
    watcher = PodWatcher(core, namespace, LABEL)
    watcher.start(asyncio.get_running_loop())
    try:
        await watcher.synced(timeout=30)
        assert set(watcher.pods) == {"first"}
        await asyncio.to_thread(restart_api_server)
        await asyncio.to_thread(core.create_namespaced_pod, namespace, pod("second"))
        await watcher.wait_for(lambda pods: True if "second" in pods else None, timeout=60)
        listed = {
            p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=LABEL).items
        }
        assert set(watcher.pods) == listed == {"first", "second"}
        assert watcher.relists >= 2  # the broken watch was followed by a fresh list
    finally:
        watcher.stop()


async def test_an_expired_resource_version_relists_and_misses_nothing(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("before"))
    # etcd compacted, and a new apiserver whose watch cache starts at etcd's current revision:
    # resourceVersion 1 is gone for good.
    compact_etcd()
    await asyncio.to_thread(restart_api_server)
    watcher = PodWatcher(core, namespace, LABEL)
    watcher.start(asyncio.get_running_loop(), resume_from="1")  # compacted long ago: 410 Gone
    try:
        await watcher.synced(timeout=30)
        assert watcher.relists == 1
        assert set(watcher.pods) == {"before"}
        await asyncio.to_thread(core.create_namespaced_pod, namespace, pod("after"))
        await watcher.wait_for(lambda pods: True if "after" in pods else None, timeout=30)
        await asyncio.to_thread(
            core.delete_namespaced_pod, "before", namespace, grace_period_seconds=0
        )
        await watcher.wait_for(lambda pods: True if "before" not in pods else None, timeout=30)
        listed = {
            p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=LABEL).items
        }
        assert set(watcher.pods) == listed == {"after"}
        assert watcher.relists == 1  # events, not relists, carried the changes
    finally:
        watcher.stop()


async def test_unlabelled_pods_are_not_followed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "other"}, "spec": {"containers": [{"name": "c", "image": "pause"}]}},
    )
    watcher = PodWatcher(core, namespace, LABEL)
    watcher.start(asyncio.get_running_loop())
    try:
        await watcher.synced(timeout=30)
        assert watcher.pods == {}
    finally:
        watcher.stop()
