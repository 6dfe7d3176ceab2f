"""The test cluster (scripts/k8s/cluster.sh) through the official client: namespaces ready for
pods, objects that may or may not be there, pods that take their time to go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers.waiting import until


def exists(read: Callable[[], Any]) -> bool:
    """`read` found its object (a 404 is "no"; any other error is raised)."""
    try:
        read()
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def wait_default_account(core: client.CoreV1Api, namespace: str, timeout: float = 30) -> None:
    """Pods are refused (403) until the controller-manager made the namespace's `default`
    ServiceAccount, as on any cluster; tests that make a namespace wait for it."""
    until(
        lambda: exists(lambda: core.read_namespaced_service_account("default", namespace)),
        timeout=timeout,
        interval=0.1,
        what=f"no default ServiceAccount in {namespace} after {timeout} s",
    )


@contextmanager
def namespace(core: client.CoreV1Api, name: str, timeout: float = 60) -> Iterator[str]:
    """A namespace of the test's own, ready for pods; deleted afterwards."""
    core.create_namespace({"metadata": {"name": name}})
    wait_default_account(core, name, timeout)
    try:
        yield name
    finally:
        core.delete_namespace(name)


def wait_pods_gone(core: client.CoreV1Api, namespace: str, timeout: float) -> None:
    """Until the namespace's pods are gone (their processes with them), or `timeout`: a
    cleanup step, it does not fail."""
    until(
        lambda: core.list_namespaced_pod(namespace).items,
        lambda pods: not pods,
        timeout=timeout,
        interval=0.5,
        fail=False,
    )
