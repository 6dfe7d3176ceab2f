"""Loading the client configuration, and refusing any context but the one mcpd was given."""

from __future__ import annotations

import os

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException


class ContextError(RuntimeError):
    """The kubeconfig points somewhere mcpd must not act on."""


def current_context(kubeconfig: str | None = None) -> str | None:
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError):
        return None
    return str(active["name"]) if active else None


def check_context(expected: str | None, kubeconfig: str | None = None) -> None:
    """With MCPD_K8S_CONTEXT set, the kubeconfig's current context must be that one."""
    if not expected or (os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig):
        return
    actual = current_context(kubeconfig)
    if actual != expected:
        raise ContextError(
            f"kubeconfig context is {actual!r}, but MCPD_K8S_CONTEXT is {expected!r}: "
            "refusing to act"
        )


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster config inside a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not (
        kubeconfig or os.environ.get("KUBECONFIG")
    ):
        config.load_incluster_config()
        return client.ApiClient()
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=kubeconfig, context=context, client_configuration=configuration
    )
    return client.ApiClient(configuration)
